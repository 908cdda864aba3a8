"""The official `azure-communication-rooms` SDK, unmodified, against Switchboard."""

import datetime
import uuid

import pytest
from azure.communication.identity import CommunicationIdentityClient
from azure.communication.rooms import (
    CommunicationUserIdentifier,
    ParticipantRole,
    RoomParticipant,
    RoomsClient,
)
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

# Pages of two, so listing rooms and participants makes the SDK follow (and sign) nextLinks.
SERVER_ENV = {"SWITCHBOARD__ROOMS__PAGE_SIZE": "2"}

UTC = datetime.timezone.utc


@pytest.fixture(params=["2024-04-15", "default"])
def rooms(server, request):
    """A client at the API version Switchboard targets, and one at the SDK's default (2025-03-13)."""
    kwargs = {} if request.param == "default" else {"api_version": request.param}
    return RoomsClient.from_connection_string(server.connection_string, **kwargs)


@pytest.fixture()
def users(server):
    identity = CommunicationIdentityClient.from_connection_string(server.connection_string)
    return lambda n: [identity.create_user() for _ in range(n)]


def when(value):
    """SDK 1.2 passes times through as the strings the service sent; accept datetimes too."""
    return value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(value)


def roster(rooms, room_id):
    return {p.communication_identifier.raw_id: p.role for p in rooms.list_participants(room_id)}


def test_create_get_and_list_with_participants_and_roles(rooms, users):
    presenter, attendee, consumer, collaborator = users(4)
    valid_from = datetime.datetime.now(UTC).replace(microsecond=123456) + datetime.timedelta(hours=1)
    valid_until = valid_from + datetime.timedelta(days=30)
    room = rooms.create_room(
        valid_from=valid_from,
        valid_until=valid_until,
        pstn_dial_out_enabled=True,
        participants=[
            RoomParticipant(communication_identifier=presenter, role=ParticipantRole.PRESENTER),
            RoomParticipant(communication_identifier=attendee),
            RoomParticipant(communication_identifier=consumer, role=ParticipantRole.CONSUMER),
            RoomParticipant(communication_identifier=collaborator, role=ParticipantRole.COLLABORATOR),
        ],
    )
    assert room.id.isdigit()
    assert when(room.valid_from) == valid_from
    assert when(room.valid_until) == valid_until
    assert room.pstn_dial_out_enabled is True
    assert abs(when(room.created_at) - datetime.datetime.now(UTC)) < datetime.timedelta(minutes=1)

    fetched = rooms.get_room(room.id)
    assert fetched == room

    # Four participants at two per page: the SDK follows nextLink.
    assert roster(rooms, room.id) == {
        presenter.raw_id: ParticipantRole.PRESENTER,
        attendee.raw_id: ParticipantRole.ATTENDEE,
        consumer.raw_id: ParticipantRole.CONSUMER,
        collaborator.raw_id: ParticipantRole.COLLABORATOR,
    }
    listed = {r.id: r for r in rooms.list_rooms()}
    assert listed[room.id] == room


def test_create_with_defaults(rooms):
    room = rooms.create_room()
    valid_from, valid_until = when(room.valid_from), when(room.valid_until)
    assert abs(valid_from - datetime.datetime.now(UTC)) < datetime.timedelta(minutes=1)
    assert valid_until - valid_from == datetime.timedelta(days=180)
    assert room.pstn_dial_out_enabled is False
    assert list(rooms.list_participants(room.id)) == []


def test_list_rooms_follows_next_links(rooms):
    created = {rooms.create_room().id for _ in range(5)}
    assert created <= {r.id for r in rooms.list_rooms()}


def test_update_room(rooms):
    room = rooms.create_room()
    valid_from = datetime.datetime.now(UTC) + datetime.timedelta(days=1)
    valid_until = valid_from + datetime.timedelta(days=7)
    updated = rooms.update_room(room_id=room.id, valid_from=valid_from, valid_until=valid_until)
    assert (when(updated.valid_from), when(updated.valid_until)) == (valid_from, valid_until)
    assert updated.pstn_dial_out_enabled is False

    # Settings not passed are left alone (the SDK sends them as null).
    updated = rooms.update_room(room_id=room.id, pstn_dial_out_enabled=True)
    assert updated.pstn_dial_out_enabled is True
    assert when(updated.valid_until) == valid_until
    assert rooms.get_room(room.id) == updated

    with pytest.raises(HttpResponseError) as err:
        rooms.update_room(room_id=room.id, valid_until=valid_from + datetime.timedelta(days=181))
    assert err.value.status_code == 400
    with pytest.raises(HttpResponseError) as err:
        rooms.update_room(room_id=room.id, valid_until=datetime.datetime.now(UTC) - datetime.timedelta(days=1))
    assert err.value.status_code == 400
    assert rooms.get_room(room.id) == updated


def test_add_update_and_remove_participants(rooms, users):
    alice, bob, carol = users(3)
    room = rooms.create_room(participants=[RoomParticipant(communication_identifier=alice)])

    rooms.add_or_update_participants(
        room_id=room.id,
        participants=[
            RoomParticipant(communication_identifier=alice, role=ParticipantRole.PRESENTER),
            RoomParticipant(communication_identifier=bob, role=ParticipantRole.CONSUMER),
            RoomParticipant(communication_identifier=carol),
        ],
    )
    assert roster(rooms, room.id) == {
        alice.raw_id: ParticipantRole.PRESENTER,
        bob.raw_id: ParticipantRole.CONSUMER,
        carol.raw_id: ParticipantRole.ATTENDEE,
    }

    # By identifier or by participant; removing someone who is not there is not an error.
    stranger = CommunicationUserIdentifier(alice.raw_id.rsplit("_", 1)[0] + "_" + str(uuid.uuid4()))
    rooms.remove_participants(
        room_id=room.id,
        participants=[bob, RoomParticipant(communication_identifier=carol), stranger],
    )
    assert roster(rooms, room.id) == {alice.raw_id: ParticipantRole.PRESENTER}


def test_participants_must_be_users_of_this_server(rooms, users):
    (alice,) = users(1)
    room = rooms.create_room()
    foreign = CommunicationUserIdentifier(f"8:acs:{uuid.uuid4()}_{uuid.uuid4()}")
    with pytest.raises(HttpResponseError) as err:
        rooms.add_or_update_participants(
            room_id=room.id,
            participants=[
                RoomParticipant(communication_identifier=alice),
                RoomParticipant(communication_identifier=foreign),
            ],
        )
    assert err.value.status_code == 400
    assert foreign.raw_id in str(err.value)
    assert list(rooms.list_participants(room.id)) == []
    with pytest.raises(HttpResponseError) as err:
        rooms.create_room(participants=[RoomParticipant(communication_identifier=foreign)])
    assert err.value.status_code == 400


def test_delete_room(rooms):
    room = rooms.create_room()
    rooms.delete_room(room.id)
    with pytest.raises(ResourceNotFoundError):
        rooms.get_room(room.id)
    with pytest.raises(ResourceNotFoundError):
        list(rooms.list_participants(room.id))
    rooms.delete_room(room.id)  # already gone: still succeeds, as in ACS


def test_wrong_access_key_is_rejected(server):
    endpoint = server.connection_string.split(";")[0]
    bad = RoomsClient.from_connection_string(endpoint + ";accesskey=" + "QUFBQUFBQUFBQUFBQUFBQUFBQUE=")
    with pytest.raises(HttpResponseError) as err:
        bad.create_room()
    assert err.value.status_code == 401
