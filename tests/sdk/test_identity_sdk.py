"""The official `azure-communication-identity` SDK, unmodified, against Switchboard."""

import datetime
import time

import jwt
import pytest
import requests
from azure.communication.identity import CommunicationIdentityClient, CommunicationTokenScope
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

ALL_SCOPES = [
    CommunicationTokenScope.VOIP,
    CommunicationTokenScope.VOIP_JOIN,
    CommunicationTokenScope.CHAT,
    CommunicationTokenScope.CHAT_JOIN,
    CommunicationTokenScope.CHAT_JOIN_LIMITED,
]


@pytest.fixture()
def client(server):
    return CommunicationIdentityClient.from_connection_string(server.connection_string)


def expiry(token):
    """SDK 1.5 passes `expiresOn` through as the string the service sent."""
    value = token.expires_on
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    return value.timestamp()


def jwks_key(server, token):
    jwks = requests.get(server.endpoint + ".well-known/jwks.json", verify=server.ca, timeout=10).json()
    kid = jwt.get_unverified_header(token)["kid"]
    return next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == kid).key


def test_create_user(client):
    user = client.create_user()
    assert user.properties["id"].startswith("8:acs:")


def test_create_user_and_token(client, server):
    user, token = client.create_user_and_token([CommunicationTokenScope.VOIP])
    claims = jwt.decode(token.token, jwks_key(server, token.token), algorithms=["ES256"])
    assert claims["sub"] == user.properties["id"]
    assert claims["acsScope"] == "voip"
    assert abs(expiry(token) - (time.time() + 1440 * 60)) < 60


@pytest.mark.parametrize("scope", ALL_SCOPES, ids=lambda s: s.value)
def test_get_token_with_each_scope(client, server, scope):
    user = client.create_user()
    token = client.get_token(user, [scope], token_expires_in=datetime.timedelta(minutes=60))
    claims = jwt.decode(token.token, jwks_key(server, token.token), algorithms=["ES256"])
    assert claims["acsScope"] == scope.value
    assert claims["scp"] == scope.value
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(expiry(token) - claims["exp"]) < 1


def test_token_lifetime_out_of_range_is_refused(client):
    user = client.create_user()
    with pytest.raises(HttpResponseError) as err:
        client.get_token(user, [CommunicationTokenScope.VOIP], token_expires_in=datetime.timedelta(minutes=30))
    assert err.value.status_code == 400


def test_tampered_token_does_not_verify(client, server):
    _, token = client.create_user_and_token([CommunicationTokenScope.VOIP])
    head, payload, sig = token.token.split(".")
    forged = ".".join([head, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"), sig])
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(forged, jwks_key(server, token.token), algorithms=["ES256"])


def test_revoke_and_delete(client):
    user = client.create_user()
    client.get_token(user, [CommunicationTokenScope.CHAT])
    client.revoke_tokens(user)
    client.delete_user(user)
    with pytest.raises((ResourceNotFoundError, HttpResponseError)) as err:
        client.revoke_tokens(user)
    assert err.value.status_code == 404


def test_wrong_access_key_is_rejected(server):
    endpoint = server.connection_string.split(";")[0]
    bad = CommunicationIdentityClient.from_connection_string(endpoint + ";accesskey=" + "QUFBQUFBQUFBQUFBQUFBQUFBQUE=")
    with pytest.raises(HttpResponseError) as err:
        bad.create_user()
    assert err.value.status_code == 401
