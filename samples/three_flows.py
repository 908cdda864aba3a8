#!/usr/bin/env python3
"""The three flows Switchboard was built for, played end to end against a running server:

  (a) calling a user without push notifications: every device of the callee keeps a signaling
      connection open (it is *registered*), so the server rings it directly; the first device
      that accepts wins and the others are told the call was answered elsewhere;
  (b) joining a user-created group call by ID: one user makes up a UUID and shares it, others
      join the same ID;
  (c) joining a scheduled meeting through the lobby: the app's backend schedules a meeting for an
      organizer of the organization; an outside user joins with the meeting ID and passcode and
      waits in the lobby until the organizer admits them, while a colleague goes straight in.

Every user gets its identity and token from the app's backend (`samples/auth_service.py`, started
here in-process on a loopback port, or the one named by --auth-service) and talks to the server
over the WebSocket signaling (`wss://HOST/signal`, docs/PROTOCOL.md) with the server's CA trusted.
Signaling only: nobody publishes or receives media, which these flows do not need (a real client
would negotiate WebRTC on the same WebSocket, or speak QUIC).

Flow (c) needs the server to know the organization: start it with

    SWITCHBOARD__ORGANIZATION__MEMBER_DOMAINS='["*@contoso.com"]' cargo run --release

then, in the same directory (the defaults find data/connection-string and data/tls/ca.pem):

    python3 samples/three_flows.py

Each step prints a line (`--show-messages` prints the signaling messages too); each expectation is
checked, with a timeout, and the script exits 1 with what was expected and what arrived instead
when one fails.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
import uuid

try:
    import websockets
    from websockets.asyncio.client import connect as ws_connect
except ImportError:
    sys.exit("this sample needs the `websockets` package: pip install -r samples/requirements.txt")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import auth_service  # noqa: E402 (next to this file)

# How long to wait for any one expected message. Everything here happens in milliseconds on a
# healthy server; the margin is for a loaded CI machine.
STEP_TIMEOUT = 10.0
# A whole flow, so a stuck step can never hang the script.
FLOW_TIMEOUT = 60.0

ORGANIZATION_DOMAIN = "contoso.com"


class FlowFailed(Exception):
    """An expectation was not met; the message says what was expected and what happened."""


# --show-messages: print every signaling message as it is sent and received, to see the protocol.
SHOW_MESSAGES = False


def say(who: str, text: str):
    print(f"  {who:<14} {text}", flush=True)


def short(identity: str) -> str:
    """`8:acs:<resource>_<uuid>` is long; its last characters tell identities apart in a log."""
    return "…" + identity[-8:]


# --- The app's backend, as its clients see it --------------------------------------------------


class Backend:
    """The app's clients' view of the auth service: plain HTTP calls (JSON)."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def _post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=auth_service.REQUEST_TIMEOUT * 2) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise FlowFailed(
                f"auth service: POST {path} {body} -> {e.code} {e.read().decode(errors='replace')}"
            ) from None
        except urllib.error.URLError as e:
            raise FlowFailed(f"cannot reach the auth service at {self.base_url}: {e.reason}") from None

    async def sign_in(self, user: str) -> dict:
        """`{user, identity, token, expiresOn}` (blocking HTTP, kept off the event loop)."""
        return await asyncio.to_thread(self._post, "/token", {"user": user})

    async def schedule_meeting(self, organizer: str, **settings) -> dict:
        return await asyncio.to_thread(self._post, "/meetings", {"organizer": organizer, **settings})


# --- One device's signaling connection ---------------------------------------------------------


class Device:
    """One signaling connection (a device of one identity): requests with `id`s and their
    responses, and the events the server pushes, kept until a step asks for them."""

    def __init__(self, name: str, signal_url: str, tls: ssl.SSLContext):
        self.name = name
        self.signal_url = signal_url
        self.tls = tls
        self.identity: str | None = None
        self._ws = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._events: list[dict] = []  # arrived and not yet taken by a step, in order
        self._arrived = asyncio.Condition()
        self._reader: asyncio.Task | None = None
        self._closed_because: str | None = None

    async def connect(self):
        try:
            self._ws = await ws_connect(self.signal_url, ssl=self.tls, open_timeout=STEP_TIMEOUT, max_size=2**20)
        except (OSError, websockets.exceptions.WebSocketException, asyncio.TimeoutError) as e:
            raise FlowFailed(f"{self.name}: cannot open {self.signal_url}: {e!r}") from None
        self._reader = asyncio.create_task(self._read(), name=f"read {self.name}")

    async def _read(self):
        try:
            async for text in self._ws:
                try:
                    message = json.loads(text)
                except ValueError:
                    self._closed_because = f"the server sent something that is not JSON: {text[:200]!r}"
                    break
                if SHOW_MESSAGES:
                    say(self.name, f"   <- {text}")
                waiter = self._pending.pop(message.get("id"), None) if "id" in message else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(message)
                    continue
                async with self._arrived:
                    self._events.append(message)
                    self._arrived.notify_all()
        except websockets.exceptions.ConnectionClosed as e:
            self._closed_because = (
                f"connection closed ({e.rcvd.code if e.rcvd else 'no close frame'}: {e.rcvd.reason if e.rcvd else ''})"
            )
        finally:
            self._closed_because = self._closed_because or "connection closed"
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(
                        FlowFailed(f"{self.name}: {self._closed_because} while waiting for a response")
                    )
            async with self._arrived:
                self._arrived.notify_all()

    async def request(self, type_: str, expect: str = "ok", **fields) -> dict:
        """Send a request and wait for its response; an `error` response (or another type than
        `expect`) fails the flow with the server's code and message."""
        request_id = next(self._ids)
        waiter = asyncio.get_running_loop().create_future()
        self._pending[request_id] = waiter
        text = json.dumps({"type": type_, "id": request_id, **fields})
        if SHOW_MESSAGES:
            say(self.name, f"   -> {text}")
        try:
            await self._ws.send(text)
        except websockets.exceptions.ConnectionClosed:
            raise FlowFailed(
                f"{self.name}: cannot send {type_}: {self._closed_because or 'connection closed'}"
            ) from None
        try:
            response = await asyncio.wait_for(waiter, STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise FlowFailed(f"{self.name}: no response to {type_} within {STEP_TIMEOUT:.0f} s") from None
        if response.get("type") != expect:
            raise FlowFailed(f"{self.name}: {type_} answered {response}, expected `{expect}`")
        return response

    async def expect(self, type_: str, what: str = "", match=None, **fields) -> dict:
        """Take the first event of `type_` whose fields have these values and that `match` (a
        predicate, if given) accepts, waiting for it. Events that do not match stay for later
        steps; a timeout lists them."""
        deadline = time.monotonic() + STEP_TIMEOUT
        async with self._arrived:
            while True:
                for i, event in enumerate(self._events):
                    if (
                        event.get("type") == type_
                        and all(event.get(k) == v for k, v in fields.items())
                        and (match is None or match(event))
                    ):
                        return self._events.pop(i)
                left = deadline - time.monotonic()
                if self._closed_because or left <= 0:
                    wanted = f"{type_} {fields}" if fields else type_
                    why = self._closed_because or f"nothing within {STEP_TIMEOUT:.0f} s"
                    raise FlowFailed(
                        f"{self.name}: expected {what or wanted}, but {why}; events not taken: "
                        f"{json.dumps(self._events) if self._events else 'none'}"
                    )
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except asyncio.TimeoutError:
                    pass

    async def expect_nothing_yet(self, what: str):
        """Check that no event has reached this device so far (a ping round trip first, so that
        whatever the server sent before answering it has arrived)."""
        await self.request("ping", expect="pong")
        if self._events:
            raise FlowFailed(f"{self.name}: expected {what}, but got {json.dumps(self._events)}")

    async def register(self, token: str, display_name: str) -> str:
        registered = await self.request("register", expect="registered", token=token, displayName=display_name)
        self.identity = registered["identity"]
        return self.identity

    async def close(self):
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def check(condition: bool, failure: str):
    if not condition:
        raise FlowFailed(failure)


def joined_by(session: dict):
    """Matches the `participantJoined` event of the signed-in user `session`."""
    return lambda event: event.get("participant", {}).get("identity") == session["identity"]


async def devices(env: Environment, *names: str) -> list[Device]:
    opened = [Device(name, env.signal_url, env.tls) for name in names]
    for device in opened:
        env.opened.append(device)
        await device.connect()
    return opened


# --- The flows ---------------------------------------------------------------------------------


class Environment:
    def __init__(self, backend: Backend, signal_url: str, tls: ssl.SSLContext):
        self.backend = backend
        self.signal_url = signal_url
        self.tls = tls
        self.opened: list[Device] = []  # closed after each flow, whatever happened


async def sign_in(env: Environment, user: str) -> dict:
    session = await env.backend.sign_in(user)
    say("backend", f"{user} -> identity {short(session['identity'])}, voip token until {session['expiresOn']}")
    return session


async def flow_call_without_push(env: Environment):
    """(a) Alice calls Bob, whose app runs on two devices; no push service is involved."""
    alice = await sign_in(env, "alice@contoso.com")
    bob = await sign_in(env, "bob@contoso.com")
    again = await env.backend.sign_in("Bob@Contoso.com")
    check(
        again["identity"] == bob["identity"],
        f"Bob signed in twice and got two identities: {bob['identity']}, {again['identity']}",
    )
    say("backend", "bob signed in again: same identity (the externalId maps the app user to it)")

    phone, laptop, caller = await devices(env, "Bob (phone)", "Bob (laptop)", "Alice")
    for device, token in ((phone, bob["token"]), (laptop, again["token"])):
        identity = await device.register(token, "Bob")
        check(identity == bob["identity"], f"{device.name} registered as {identity}, not as Bob {bob['identity']}")
        say(device.name, "registered: the open connection is how it gets called")
    await caller.register(alice["token"], "Alice")
    say("Alice", "registered")

    joined = await caller.request("startCall", expect="joined", targets=[bob["identity"]])
    check(
        joined.get("state") == "Connecting",
        f"Alice: startCall joined in state {joined.get('state')}, expected Connecting",
    )
    call_id = joined["callId"]
    say("Alice", f"startCall Bob -> Connecting (call {call_id})")

    for device in (phone, laptop):
        ring = await device.expect("incomingCall", callId=call_id)
        check(
            ring["caller"]["identity"] == alice["identity"],
            f"{device.name}: incomingCall from {ring['caller']}, expected Alice {alice['identity']}",
        )
        say(device.name, f"incomingCall from {ring['caller'].get('displayName')} - ringing")
    await caller.expect("callStateChanged", state="Ringing")
    say("Alice", "callStateChanged Ringing")

    accepted = await phone.request("acceptCall", expect="joined", callId=call_id)
    check(accepted.get("state") == "Connected", f"Bob (phone): acceptCall joined in state {accepted.get('state')}")
    say("Bob (phone)", "acceptCall -> Connected")
    ended = await laptop.expect("incomingCallEnded", callId=call_id)
    check(
        ended.get("code") == "AnsweredElsewhere", f"Bob (laptop): incomingCallEnded {ended}, expected AnsweredElsewhere"
    )
    say("Bob (laptop)", "incomingCallEnded AnsweredElsewhere - stops ringing")
    await caller.expect("callStateChanged", state="Connected")
    say("Alice", "callStateChanged Connected")
    await caller.expect("participantJoined", "participantJoined for Bob", match=joined_by(bob))
    say("Alice", "participantJoined Bob")

    await phone.request("hangUp")
    say("Bob (phone)", "hangUp")
    gone = await caller.expect("callStateChanged", state="Disconnected")
    check(gone.get("code") == "HungUp", f"Alice: Disconnected with {gone.get('code')}, expected HungUp")
    say("Alice", "callStateChanged Disconnected HungUp - the call ended for both")


async def flow_group_call_by_id(env: Environment):
    """(b) Carol makes up a group call ID and shares it; Dave joins the same ID."""
    carol = await sign_in(env, "carol@contoso.com")
    dave = await sign_in(env, "dave@example.org")  # group calls need no organization
    first, second = await devices(env, "Carol", "Dave")
    await first.register(carol["token"], "Carol")
    await second.register(dave["token"], "Dave")

    group_id = str(uuid.uuid4())
    say("Carol", f"creates group call {group_id} and shares the ID")
    joined = await first.request("join", expect="joined", groupId=group_id)
    check(joined.get("state") == "Connected", f"Carol: joined in state {joined.get('state')}")
    check(joined.get("participants") == [], f"Carol: a new group call already had {joined.get('participants')}")
    say("Carol", "join -> Connected, nobody else yet")

    joined = await second.request("join", expect="joined", groupId=group_id)
    present = [p["identity"] for p in joined.get("participants", [])]
    check(present == [carol["identity"]], f"Dave: joined with participants {present}, expected just Carol")
    say("Dave", "join -> Connected, Carol is there")
    arrived = await first.expect("participantJoined", "participantJoined for Dave", match=joined_by(dave))
    say("Carol", "participantJoined Dave")

    await second.request("leave")
    left = await first.expect("participantLeft", participantId=arrived["participant"]["participantId"])
    check(left.get("code") == "Left", f"Carol: participantLeft {left}, expected code Left")
    say("Carol", "participantLeft Dave (Left)")
    await first.request("leave")


async def flow_meeting_through_lobby(env: Environment):
    """(c) The backend schedules Olga's meeting; Eve (outside) waits in the lobby until Olga admits
    her; Frank (a colleague) goes straight in."""
    organizer = "olga@contoso.com"
    meeting = await env.backend.schedule_meeting(
        organizer,
        subject="Quarterly review",
        lobbyBypassScope="organization",  # members of contoso.com skip the lobby
        allowedPresenters="organizer",  # so only Olga admits
        passcodeRequired=True,
    )
    check(bool(meeting.get("passcode")), f"the meeting has no passcode though one was required: {meeting}")
    join_by_id = {"meetingId": meeting["joinMeetingId"], "passcode": meeting["passcode"]}
    say("backend", f"scheduled '{meeting['subject']}' for {organizer}")
    say("backend", f"shares meeting ID {join_by_id['meetingId']} and passcode {join_by_id['passcode']}")

    olga = await sign_in(env, organizer)
    frank = await sign_in(env, "frank@contoso.com")
    eve = await sign_in(env, "eve@example.org")
    guest, host, colleague = await devices(env, "Eve", "Olga", "Frank")
    await guest.register(eve["token"], "Eve")
    await host.register(olga["token"], "Olga")
    await colleague.register(frank["token"], "Frank")

    waiting = await guest.request("join", expect="joined", **join_by_id)
    check(
        waiting.get("state") == "InLobby",
        f"Eve (outside the organization): joined in state {waiting.get('state')}, expected InLobby",
    )
    check(not waiting.get("participants"), f"Eve sees participants from the lobby: {waiting.get('participants')}")
    say("Eve", "join with meeting ID + passcode -> InLobby")

    joined = await host.request("join", expect="joined", **join_by_id)
    check(joined.get("state") == "Connected", f"Olga (the organizer): joined in state {joined.get('state')}")
    say("Olga", "join -> Connected (the organizer always goes straight in)")
    lobby = await host.expect("lobbyUpdated", what="lobbyUpdated listing Eve")
    listed = [p for p in lobby["participants"] if p["identity"] == eve["identity"]]
    check(len(listed) == 1, f"Olga: lobbyUpdated {lobby['participants']} does not list Eve {eve['identity']}")
    say("Olga", f"lobbyUpdated: {listed[0].get('displayName')} is waiting")

    # Frank clicks the link in his invitation instead: the other locator, no passcode needed.
    joined = await colleague.request("join", expect="joined", meetingLink=meeting["joinWebUrl"])
    check(
        joined.get("state") == "Connected",
        f"Frank (frank@{ORGANIZATION_DOMAIN}) landed {joined.get('state')}, not Connected: the server does not count "
        f"@{ORGANIZATION_DOMAIN} users as organization members. Start it with "
        f"SWITCHBOARD__ORGANIZATION__MEMBER_DOMAINS='[\"*@{ORGANIZATION_DOMAIN}\"]'",
    )
    say("Frank", "join with the meeting link -> Connected (a member of the organization skips the lobby)")
    await guest.expect_nothing_yet("nothing of the meeting to reach Eve in the lobby")
    say("Eve", "still waiting; no meeting events reached her")

    await host.request("admitLobby", participantIds=[listed[0]["participantId"]])
    say("Olga", "admitLobby Eve")
    await guest.expect("callStateChanged", state="Connected")
    admitted = await guest.expect("admitted")
    present = sorted(p["identity"] for p in admitted.get("participants", []))
    check(
        present == sorted([olga["identity"], frank["identity"]]),
        f"Eve: admitted with participants {present}, expected Olga and Frank",
    )
    say("Eve", f"callStateChanged Connected, admitted as {admitted.get('role')} with Olga and Frank")
    await host.expect("participantJoined", "participantJoined for Eve", match=joined_by(eve))
    say("Olga", "participantJoined Eve")

    for device in (guest, colleague, host):
        await device.request("leave")


FLOWS = [
    ("a", "calling a user without push notifications", flow_call_without_push),
    ("b", "joining a user-created group call by ID", flow_group_call_by_id),
    ("c", "joining a scheduled meeting through the lobby", flow_meeting_through_lobby),
]


async def run(env: Environment, chosen: set[str]) -> int:
    failures = 0
    for key, title, flow in FLOWS:
        if key not in chosen:
            continue
        print(f"\n({key}) {title}", flush=True)
        try:
            await asyncio.wait_for(flow(env), FLOW_TIMEOUT)
            print(f"({key}) passed", flush=True)
        except FlowFailed as e:
            failures += 1
            print(f"({key}) FAILED: {e}", flush=True)
        except asyncio.TimeoutError:
            failures += 1
            print(f"({key}) FAILED: did not finish within {FLOW_TIMEOUT:.0f} s", flush=True)
        finally:
            for device in env.opened:
                await device.close()
            env.opened.clear()
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description="Play Switchboard's three flows against a running server.")
    auth_service.add_server_arguments(parser)
    parser.add_argument(
        "--auth-service",
        default=os.environ.get("SWITCHBOARD_AUTH_SERVICE"),
        help="base URL of a running samples/auth_service.py (default: start one in-process)",
    )
    parser.add_argument("--flows", default="abc", help="which flows to run, e.g. `ac` (default: abc)")
    parser.add_argument("--show-messages", action="store_true", help="print every signaling message")
    args = parser.parse_args()
    chosen = set(args.flows)
    global SHOW_MESSAGES
    SHOW_MESSAGES = args.show_messages
    if not chosen or not chosen <= {"a", "b", "c"}:
        parser.error("--flows takes letters from abc")

    admin = auth_service.admin_from_arguments(args)
    try:
        admin.check_reachable()
    except ConnectionError as e:
        print(f"FAILED: {e}", flush=True)
        return 1
    if args.auth_service:
        base_url, httpd = args.auth_service, None
    else:
        base_url, httpd = auth_service.start_in_background(auth_service.AuthService(admin))
    # The signaling endpoint lives next to the API: https://HOST:PORT -> wss://HOST:PORT/signal.
    signal_url = "wss://" + admin.endpoint.split("://", 1)[1] + "/signal"
    print(f"server {admin.endpoint} (signaling {signal_url}); auth service {base_url}", flush=True)

    env = Environment(Backend(base_url), signal_url, auth_service.tls_context(args.ca))
    try:
        failures = asyncio.run(run(env, chosen))
    finally:
        if httpd is not None:
            httpd.shutdown()
    if failures:
        print(f"\n{failures} of {len(chosen)} flows failed", flush=True)
        return 1
    print("\nthe flow passed" if len(chosen) == 1 else f"\nall {len(chosen)} flows passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
