"""The official `azure-communication-callautomation` SDK, unmodified, against Switchboard: create a
call to a QUIC device that answers (examples/dtmf_device.rs), read its properties, add and remove
a participant, play a WAV file from the media directory, start and stop continuous DTMF
recognition of the tones the device presses, and hang up. Events arrive at a real HTTP receiver on
loopback and are parsed as CloudEvents with azure-core."""

import atexit
import shutil
import http.server
import json
import math
import os
import queue
import struct
import subprocess
import tempfile
import threading
import time
import ssl
import urllib.request

import pytest
from azure.communication.callautomation import (
    CallAutomationClient,
    CommunicationUserIdentifier,
    FileSource,
)
from azure.communication.identity import CommunicationIdentityClient
from azure.core.messaging import CloudEvent

from conftest import example

MEDIA_DIR = tempfile.mkdtemp(prefix="sb-media-")
atexit.register(shutil.rmtree, MEDIA_DIR, ignore_errors=True)
SERVER_ENV = {"SWITCHBOARD__CALL_AUTOMATION__MEDIA_DIR": MEDIA_DIR}
# The SDK defaults to a newer API version; Switchboard implements 2024-09-15.
# The version the server implements, and the SDK's own (newer) default, which it also accepts.
API_VERSIONS = ["2024-09-15", None]


def write_wav(path, seconds=0.6, rate=16000):
    """A 440 Hz tone as 16-bit PCM mono."""
    n = int(seconds * rate)
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(n))
    header = b"RIFF" + struct.pack("<I", 36 + len(frames)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16
    ) + b"data" + struct.pack("<I", len(frames))
    with open(path, "wb") as f:
        f.write(header + frames)


class Receiver:
    """The app's callback endpoint: every delivery parsed with azure-core's CloudEvent."""

    def __init__(self):
        self.events = queue.Queue()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                for raw in json.loads(body):
                    receiver.events.put(CloudEvent.from_dict(raw))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/events"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.seen = []

    def wait(self, name, timeout=10.0, **match):
        """The next event of type Microsoft.Communication.<name> whose data has `match`."""
        for event in self.seen:
            if event.type.endswith("." + name) and all(event.data.get(k) == v for k, v in match.items()):
                self.seen.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {name} {match}; got {[e.type for e in self.seen]}")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if event.type.endswith("." + name) and all(event.data.get(k) == v for k, v in match.items()):
                return event
            self.seen.append(event)

    def drain(self):
        while True:
            try:
                self.seen.append(self.events.get_nowait())
            except queue.Empty:
                return [e.type.rsplit(".", 1)[-1] for e in self.seen]


def ssl_context(ca):
    return ssl.create_default_context(cafile=ca)


@pytest.fixture()
def receiver():
    r = Receiver()
    yield r
    r.httpd.shutdown()


def device(server, token, tones="one,two,pound"):
    """A QUIC device that answers calls and presses `tones` every second."""
    proc = subprocess.Popen(
        [example("dtmf_device"), "--quic", server.quic, "--ca", server.ca, "--token", token, "--tones", tones],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert json.loads(line)["event"] == "registered", line
    return proc


@pytest.mark.parametrize("api_version", API_VERSIONS, ids=["2024-09-15", "sdk-default"])
def test_call_play_dtmf_and_hang_up(server, receiver, api_version):
    write_wav(os.path.join(MEDIA_DIR, "hello.wav"))
    identity = CommunicationIdentityClient.from_connection_string(server.connection_string)
    callee, callee_token = identity.create_user_and_token(scopes=["voip"])
    other, other_token = identity.create_user_and_token(scopes=["voip"])
    phones = [device(server, callee_token.token), device(server, other_token.token)]
    try:
        pinned = {"api_version": api_version} if api_version else {}
        client = CallAutomationClient.from_connection_string(server.connection_string, **pinned)
        created = client.create_call(
            CommunicationUserIdentifier(callee.properties["id"]),
            receiver.url,
            operation_context="sdk-create",
            source_display_name="SDK test",
        )
        call_id = created.call_connection_id
        connected = receiver.wait("CallConnected")
        assert connected.data["callConnectionId"] == call_id
        assert connected.data["operationContext"] == "sdk-create"
        call = client.get_call_connection(call_id)

        props = call.get_call_properties()
        assert props.call_connection_id == call_id
        assert props.call_connection_state == "connected"
        assert props.callback_url == receiver.url
        assert [p.identifier.raw_id for p in call.list_participants()] == [callee.raw_id]

        # Add a second person (the device answers), then remove them.
        added = call.add_participant(CommunicationUserIdentifier(other.properties["id"]), operation_context="sdk-add")
        assert added.invitation_id
        ok = receiver.wait("AddParticipantSucceeded")
        assert ok.data["participant"]["rawId"] == other.raw_id
        call.remove_participant(CommunicationUserIdentifier(other.properties["id"]), operation_context="sdk-rm")
        receiver.wait("RemoveParticipantSucceeded")

        # Play a file from the media directory to everyone.
        call.play_media([FileSource(url="hello.wav")], operation_context="sdk-play")  # play_to="all"
        receiver.wait("PlayStarted", operationContext="sdk-play")
        completed = receiver.wait("PlayCompleted", operationContext="sdk-play")
        assert completed.data["resultInformation"]["code"] == 200

        # Continuous DTMF: the device presses 1, 2, # every second.
        target = CommunicationUserIdentifier(callee.properties["id"])
        call.start_continuous_dtmf_recognition(target, operation_context="sdk-dtmf")
        tones = [receiver.wait("ContinuousDtmfRecognitionToneReceived").data for _ in range(3)]
        assert [t["sequenceId"] for t in tones] == [1, 2, 3]
        assert set(t["tone"] for t in tones) <= {"one", "two", "pound"}
        call.stop_continuous_dtmf_recognition(target, operation_context="sdk-dtmf-stop")
        receiver.wait("ContinuousDtmfRecognitionStopped")
        time.sleep(0.3)  # tones in flight when it stopped
        receiver.drain()
        receiver.seen = [e for e in receiver.seen if not e.type.endswith("ToneReceived")]
        time.sleep(1.5)  # the device presses again; nobody listens
        assert "ContinuousDtmfRecognitionToneReceived" not in receiver.drain()

        # The SDK puts a Repeatability-Request-ID on its requests (create, play, DTMF...): the
        # server remembers each, so a retried request is answered, not run twice.
        metrics = urllib.request.urlopen(server.endpoint + "metrics", context=ssl_context(server.ca)).read().decode()
        first = [l for l in metrics.splitlines() if l.startswith('switchboard_http_repeatable_requests_total{outcome="first"}')]
        assert first and float(first[0].split()[-1]) >= 3, first

        call.hang_up(is_for_everyone=False)
        receiver.wait("CallDisconnected")
    finally:
        for p in phones:
            p.kill()
            p.wait()
