#!/usr/bin/env python3
"""A small trusted authentication / identity-management service: the backend of an app that calls
through Switchboard.

It is the only part of the app that holds the server's connection string
(`endpoint=https://HOST:PORT/;accesskey=BASE64`). The app's clients never see the access key; they
ask this service for an access token and use it on the signaling WebSocket (`wss://HOST/signal`).

What it does:
  * maps the app's own users (here: e-mail-like user names such as `alice@contoso.com`) to
    Switchboard communication identities by `externalId`. `POST /identities` with an `externalId`
    is idempotent on the server (201 the first time, 200 with the same identity afterwards), so
    this service keeps no table of its own: the server's identity store is the mapping;
  * issues `voip` access tokens (`POST /identities/{id}/:issueAccessToken`);
  * schedules meetings (`POST /meetings`) for an organizer, the Teams-style kind with a lobby.

Its HTTP API for the app's clients (JSON in, JSON out):

    POST /token    {"user": "alice@contoso.com"}
                   -> {"user", "identity", "token", "expiresOn"}
    POST /meetings {"organizer": "olga@contoso.com", "subject"?, "lobbyBypassScope"?,
                    "allowedPresenters"?, "passcodeRequired"?}
                   -> {"id", "subject", "joinMeetingId", "passcode", "joinWebUrl", "organizer"}

The management calls are signed with ACS HMAC-SHA256 by hand (standard library only). The official
`azure-communication-identity` SDK (1.5.0, the newest on PyPI) signs the same way but cannot send
an `externalId`, and there is no official SDK for Switchboard's meetings API, so one small signer
serves both. TLS to the server is verified against the server's CA file; verification is never
turned off.

Run it next to a server started with `cargo run --release` (same directory, so the defaults find
`data/connection-string` and `data/tls/ca.pem`):

    python3 samples/auth_service.py                   # listens on http://127.0.0.1:8080
    curl -s -X POST http://127.0.0.1:8080/token -d '{"user": "alice@contoso.com"}'

`samples/three_flows.py` starts it in-process and drives the three flows through it.
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import hashlib
import hmac
import http.server
import json
import os
import re
import ssl
import sys
import threading
import traceback
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

# `externalId` on POST /identities arrived with the 2025 identity API versions; Switchboard accepts
# 2025-06-30. The other identity calls have the same shape in every version.
IDENTITY_API_VERSION = "2025-06-30"
# The meetings API is shaped like Microsoft Graph (which has no api-version); Switchboard names this
# shape 2025-01-01.
MEETINGS_API_VERSION = "2025-01-01"
# What a calling client needs: start calls, be called, join group calls and meetings.
CALLING_SCOPES = ["voip"]
# Seconds to wait for the server on one management call.
REQUEST_TIMEOUT = 15

DEFAULT_CONNECTION_STRING_FILE = "data/connection-string"
DEFAULT_CA_FILE = "data/tls/ca.pem"
DEFAULT_LISTEN = "127.0.0.1:8080"


# --- Configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionString:
    """`endpoint=https://HOST:PORT/;accesskey=BASE64`, as `switchboard connection-string` prints."""

    endpoint: str  # without the trailing slash, e.g. https://127.0.0.1:8443
    access_key: bytes  # base64-decoded

    @classmethod
    def parse(cls, text: str) -> ConnectionString:
        parts = {}
        for part in text.strip().split(";"):
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"connection string part {part!r} has no '='")
            parts[key.strip().lower()] = value.strip()
        if "endpoint" not in parts or "accesskey" not in parts:
            raise ValueError("connection string needs endpoint=...;accesskey=...")
        try:
            key = base64.b64decode(parts["accesskey"], validate=True)
        except ValueError as e:
            raise ValueError(f"accesskey is not base64: {e}") from None
        return cls(parts["endpoint"].rstrip("/"), key)


def load_connection_string(value: str | None, file: str) -> ConnectionString:
    """The connection string given directly (argument or environment), else read from `file`."""
    if not value:
        try:
            with open(file, encoding="utf-8") as f:
                value = f.read()
        except OSError as e:
            raise SystemExit(
                f"cannot read the connection string from {file} ({e.strerror}); run this from the directory the "
                "server runs in, or pass --connection-string / SWITCHBOARD_CONNECTION_STRING"
            ) from None
    try:
        return ConnectionString.parse(value)
    except ValueError as e:
        raise SystemExit(f"bad connection string: {e}") from None


def tls_context(ca_file: str) -> ssl.SSLContext:
    """A client TLS context that trusts the server's CA (and verifies the host name, as always)."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise SystemExit(
            f"cannot load the server's CA certificate from {ca_file} ({e}); a fresh server writes it to data/tls/ca.pem"
        ) from None


# --- Signed management calls -------------------------------------------------------------------


class SwitchboardApiError(Exception):
    """The server refused a management call; carries the ACS error body's code, message and target."""

    def __init__(self, method: str, path: str, status: int, body: dict):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code = error.get("code", "")
        self.target = error.get("target")
        self.message = error.get("message", "") or str(body)
        where = f" (target {self.target})" if self.target else ""
        super().__init__(f"{method} {path} -> {status} {self.code}: {self.message}{where}")


class SwitchboardAdmin:
    """Signed calls to Switchboard's management API (the ACS data-plane shape)."""

    def __init__(self, connection: ConnectionString, ca_file: str):
        self.endpoint = connection.endpoint
        self._key = connection.access_key
        # The `host` the server sees (HOST:PORT) is part of the string to sign.
        self._host = urllib.parse.urlsplit(self.endpoint).netloc
        self._tls = tls_context(ca_file)

    def _sign(self, method: str, path_and_query: str, body: bytes) -> dict[str, str]:
        """ACS HMAC-SHA256: sign `VERB\\n<path and query>\\n<x-ms-date>;<host>;<x-ms-content-sha256>`
        with the base64-decoded access key (as `src/auth/hmac.rs` verifies it)."""
        date = email.utils.formatdate(usegmt=True)  # RFC 1123; the server allows +-5 minutes of skew
        content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
        string_to_sign = f"{method}\n{path_and_query}\n{date};{self._host};{content_hash}"
        signature = base64.b64encode(hmac.new(self._key, string_to_sign.encode(), hashlib.sha256).digest()).decode()
        return {
            "x-ms-date": date,
            "x-ms-content-sha256": content_hash,
            "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}",
        }

    def call(self, method: str, path_and_query: str, body: dict | None = None) -> tuple[int, dict]:
        """One signed request; returns (status, JSON body). Raises SwitchboardApiError on 4xx/5xx."""
        data = b"" if body is None else json.dumps(body).encode()
        headers = self._sign(method, path_and_query, data)
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.endpoint + path_and_query, data=data or None, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, context=self._tls, timeout=REQUEST_TIMEOUT) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                parsed = json.loads(raw) if raw else {}
            except ValueError:
                parsed = {"error": {"message": raw.decode(errors="replace")}}
            raise SwitchboardApiError(method, path_and_query, e.code, parsed) from None
        except urllib.error.URLError as e:
            # Connection refused, TLS verification failed, timeout: say which server, and why.
            raise ConnectionError(f"cannot reach Switchboard at {self.endpoint}: {e.reason}") from None

    def check_reachable(self):
        """Fail fast, with one clear message, when the server is not there or not trusted:
        `GET /readyz` (public) over verified TLS."""
        try:
            with urllib.request.urlopen(self.endpoint + "/readyz", context=self._tls, timeout=REQUEST_TIMEOUT):
                pass
        except urllib.error.HTTPError as e:
            raise ConnectionError(f"Switchboard at {self.endpoint} is not ready (GET /readyz -> {e.code})") from None
        except urllib.error.URLError as e:
            hint = (
                " (is --ca the server's CA file?)"
                if isinstance(e.reason, ssl.SSLError)
                else " (is the server running?)"
            )
            raise ConnectionError(f"cannot reach Switchboard at {self.endpoint}: {e.reason}{hint}") from None

    def identity_for(self, external_id: str) -> tuple[str, bool]:
        """The communication identity of an app user, created on first use: (raw ID, created now?)."""
        status, body = self.call("POST", f"/identities?api-version={IDENTITY_API_VERSION}", {"externalId": external_id})
        return body["identity"]["id"], status == 201

    def issue_token(self, identity: str, scopes: list[str], minutes: int | None = None) -> dict:
        """`{token, expiresOn}` for an identity (the server's default lifetime is 24 hours)."""
        body: dict = {"scopes": scopes}
        if minutes is not None:
            body["expiresInMinutes"] = minutes
        path = (
            f"/identities/{urllib.parse.quote(identity, safe='')}/:issueAccessToken?api-version={IDENTITY_API_VERSION}"
        )
        return self.call("POST", path, body)[1]

    def create_meeting(
        self,
        organizer: str,
        subject: str,
        lobby_bypass_scope: str,
        allowed_presenters: str,
        passcode_required: bool,
    ) -> dict:
        """A meeting that starts now and lasts an hour (the server's default), as the API returns it."""
        body = {
            "subject": subject,
            "participants": {"organizer": {"identity": {"user": {"id": organizer}}}},
            "lobbyBypassSettings": {"scope": lobby_bypass_scope},
            "allowedPresenters": allowed_presenters,
            "joinMeetingIdSettings": {"isPasscodeRequired": passcode_required},
        }
        return self.call("POST", f"/meetings?api-version={MEETINGS_API_VERSION}", body)[1]


# --- The service's own HTTP API ----------------------------------------------------------------

# What this sample accepts as an app user name. A real app has its own user IDs; whatever they are,
# they become the `externalId` (which is also what `[organization] member_domains` patterns match).
USER_NAME = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


class BadRequest(Exception):
    """The app's client sent something this service will not act on (answered 400)."""


def authenticate_app_user(headers, claimed_user: object, field: str = "user") -> str:
    """Who is asking. PLACEHOLDER: this sample believes the user the client names in `field`.

    A real app MUST authenticate its users before handing out tokens: check its own session
    cookie, an OpenID Connect ID token, or whatever sign-in it already has, and take the user name
    from that, never from the request body. Anyone who can reach this endpoint can otherwise get a
    token for anybody; that is also why it listens on loopback by default.
    """
    del headers  # a real check reads the session or bearer credential from here
    if not isinstance(claimed_user, str) or not USER_NAME.match(claimed_user):
        raise BadRequest(f"`{field}` must be a user name like alice@contoso.com")
    return claimed_user.lower()  # one user, one identity, whatever the letter case


class AuthService:
    """The service logic behind the HTTP API; usable in-process too."""

    def __init__(self, admin: SwitchboardAdmin):
        self.admin = admin

    def token_for(self, user: str) -> dict:
        identity, _created = self.admin.identity_for(user)
        token = self.admin.issue_token(identity, CALLING_SCOPES)
        return {"user": user, "identity": identity, "token": token["token"], "expiresOn": token["expiresOn"]}

    def schedule_meeting(self, organizer_user: str, request: dict) -> dict:
        """A meeting organized by `organizer_user` (an authenticated app user)."""
        passcode_required = request.get("passcodeRequired", True)
        if not isinstance(passcode_required, bool):
            raise BadRequest("`passcodeRequired` must be true or false")
        organizer, _ = self.admin.identity_for(organizer_user)
        meeting = self.admin.create_meeting(
            organizer,
            subject=str(request.get("subject", "Meeting")),
            # The server checks these two against Graph's values and names the field when wrong.
            lobby_bypass_scope=str(request.get("lobbyBypassScope", "organization")),
            allowed_presenters=str(request.get("allowedPresenters", "organizer")),
            passcode_required=passcode_required,
        )
        join = meeting.get("joinMeetingIdSettings", {})
        return {
            "id": meeting["id"],
            "subject": meeting.get("subject"),
            "organizer": {"user": organizer_user, "identity": organizer},
            "joinMeetingId": join.get("joinMeetingId"),
            "passcode": join.get("passcode"),
            "joinWebUrl": meeting.get("joinWebUrl"),
        }


class _Handler(http.server.BaseHTTPRequestHandler):
    service: AuthService  # set on the subclass made by serve()
    quiet: bool = False
    MAX_BODY = 16 * 1024

    def do_POST(self):  # noqa: N802 (the http.server naming)
        try:
            body = self._json_body()
            if self.path == "/token":
                user = authenticate_app_user(self.headers, body.get("user"))
                self._reply(200, self.service.token_for(user))
            elif self.path == "/meetings":
                # The signed-in user schedules a meeting that they organize.
                organizer = authenticate_app_user(self.headers, body.get("organizer"), "organizer")
                self._reply(201, self.service.schedule_meeting(organizer, body))
            else:
                self._reply(404, {"error": {"code": "NotFound", "message": "POST /token or POST /meetings"}})
        except BadRequest as e:
            self._reply(400, {"error": {"code": "BadRequest", "message": str(e)}})
        except SwitchboardApiError as e:
            # Pass the server's refusal on, with its code and the field it names. A 400 is about
            # what the client asked for (e.g. an unknown lobby scope); anything else (a refused
            # signature, a server error) is this service's or the server's problem: 502.
            status = 400 if e.status == 400 else 502
            self._reply(status, {"error": {"code": e.code or "UpstreamError", "message": str(e), "target": e.target}})
        except ConnectionError as e:
            self._reply(503, {"error": {"code": "ServiceUnavailable", "message": str(e)}})
        except Exception as e:  # a bug here, or a server answer this sample did not expect
            traceback.print_exc()
            self._reply(500, {"error": {"code": "InternalError", "message": f"{type(e).__name__}: {e}"}})

    def _json_body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.MAX_BODY:
            raise BadRequest("request body too large")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise BadRequest("request body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        return body

    def _reply(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 (the http.server signature)
        if not self.quiet:
            sys.stderr.write(f"auth_service: {self.address_string()} {format % args}\n")


def serve(service: AuthService, listen: str, quiet: bool = False) -> http.server.ThreadingHTTPServer:
    """Bind the HTTP API (`HOST:PORT`; port 0 picks a free one); the caller runs serve_forever()."""
    host, _, port = listen.rpartition(":")
    handler = type("Handler", (_Handler,), {"service": service, "quiet": quiet})
    return http.server.ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), handler)


def start_in_background(
    service: AuthService, listen: str = "127.0.0.1:0"
) -> tuple[str, http.server.ThreadingHTTPServer]:
    """Serve on a daemon thread; returns the base URL and the server (call .shutdown() to stop)."""
    httpd = serve(service, listen, quiet=True)
    threading.Thread(target=httpd.serve_forever, name="auth-service", daemon=True).start()
    host, port = httpd.server_address[:2]
    return f"http://{host}:{port}", httpd


def add_server_arguments(parser: argparse.ArgumentParser):
    """The arguments every sample takes to find and trust the server."""
    parser.add_argument(
        "--connection-string",
        default=os.environ.get("SWITCHBOARD_CONNECTION_STRING"),
        help="endpoint=...;accesskey=... (default: $SWITCHBOARD_CONNECTION_STRING, else --connection-string-file)",
    )
    parser.add_argument(
        "--connection-string-file",
        default=os.environ.get("SWITCHBOARD_CONNECTION_STRING_FILE", DEFAULT_CONNECTION_STRING_FILE),
        help=f"file holding the connection string (default: {DEFAULT_CONNECTION_STRING_FILE})",
    )
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("SWITCHBOARD_ENDPOINT"),
        help="the server's https:// URL (default: $SWITCHBOARD_ENDPOINT, else the connection string's endpoint)",
    )
    parser.add_argument(
        "--ca",
        default=os.environ.get("SWITCHBOARD_CA", DEFAULT_CA_FILE),
        help=f"the server's CA certificate (default: $SWITCHBOARD_CA, else {DEFAULT_CA_FILE})",
    )


def admin_from_arguments(args: argparse.Namespace) -> SwitchboardAdmin:
    connection = load_connection_string(args.connection_string, args.connection_string_file)
    if args.endpoint:
        connection = ConnectionString(args.endpoint.rstrip("/"), connection.access_key)
    return SwitchboardAdmin(connection, args.ca)


def main() -> int:
    parser = argparse.ArgumentParser(description="The app's trusted identity and token service for Switchboard.")
    add_server_arguments(parser)
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT to serve on (default: {DEFAULT_LISTEN})")
    args = parser.parse_args()
    admin = admin_from_arguments(args)
    try:
        admin.check_reachable()
    except ConnectionError as e:
        raise SystemExit(f"auth_service: {e}") from None
    httpd = serve(AuthService(admin), args.listen)
    host, port = httpd.server_address[:2]
    print(f"auth_service: serving http://{host}:{port}/ (POST /token, POST /meetings) for {admin.endpoint}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
