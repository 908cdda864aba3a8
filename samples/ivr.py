#!/usr/bin/env python3
"""An IVR on Switchboard's call automation, with the official `azure-communication-callautomation`
SDK. The service keeps a support group call open and puts an agent in it; it calls a customer,
plays a menu to the customer only, collects a DTMF key and, for "1", adds the customer to the
support group call (the customer's phone rings with the group's ID and joins it, leaving the IVR
call), then leaves the customer and the agent to talk.

Events come to a callback receiver this script runs on loopback (the default
`[webhooks] allowed_hosts` allows loopback only) and are parsed with azure-core's CloudEvent.

The customer and the agent are identities this script creates; their phones are QUIC devices
that answer every call, ending the one they are in (`examples/dtmf_device.rs`, the customer's
pressing "1"). Start the
server, build the device, then, in the same directory (the defaults find data/connection-string
and data/tls/ca.pem; --media-dir must be the server's `[call_automation] media_dir`):

    SWITCHBOARD__CALL_AUTOMATION__MEDIA_DIR=media cargo run --release &
    cargo build --release --example dtmf_device
    python3 samples/ivr.py --device target/release/examples/dtmf_device --media-dir media

Each step prints a line; the script exits 1 when an expected event does not come in time.
"""

from __future__ import annotations

import argparse
import http.server
import json
import math
import os
import queue
import struct
import subprocess
import sys
import threading
import time
import uuid

from azure.communication.callautomation import (
    CallAutomationClient,
    CommunicationUserIdentifier,
    DtmfTone,
    FileSource,
    RecognizeInputType,
)
from azure.communication.identity import CommunicationIdentityClient
from azure.core.messaging import CloudEvent


class Events:
    """The app's webhook endpoint."""

    def __init__(self):
        self.queue: queue.Queue[CloudEvent] = queue.Queue()
        # Events taken from the queue that no wait asked for yet.
        self.held: list[CloudEvent] = []
        inbox = self.queue

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                for raw in json.loads(body):
                    inbox.put(CloudEvent.from_dict(raw))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, connection: str, *names: str, timeout: float = 15.0) -> CloudEvent:
        """The first event of call connection `connection` whose type is one of `names`. Events
        of two connections interleave: the others are printed and kept for later waits."""

        def matches(event: CloudEvent) -> bool:
            name = event.type.rsplit(".", 1)[-1]
            return name in names and event.data.get("callConnectionId") == connection

        for event in self.held:
            if matches(event):
                self.held.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if matches(event):
                return event
            print(f"   (event {event.type.rsplit('.', 1)[-1]})")
            self.held.append(event)
        sys.exit(f"FAILED: no {' or '.join(names)} within {timeout:.0f} s")


def write_menu(path: str) -> None:
    """The menu prompt: two short beeps (a real IVR would ship a recorded WAV)."""
    rate, samples = 16000, []
    for freq, secs in ((660, 0.2), (0, 0.1), (880, 0.2)):
        samples += [int(6000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(int(secs * rate))]
    frames = struct.pack(f"<{len(samples)}h", *samples)
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + len(frames)) + b"WAVEfmt " + fmt + b"data")
        f.write(struct.pack("<I", len(frames)) + frames)


def phone(device: str, quic: str, ca: str, token: str, tones: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [device, "--quic", quic, "--ca", ca, "--token", token, "--tones", tones, "--every", "1.5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    if json.loads(proc.stdout.readline()).get("event") != "registered":
        sys.exit("FAILED: the device did not register")
    return proc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connection-string", default=None, help="default: data/connection-string")
    p.add_argument("--ca", default="data/tls/ca.pem")
    p.add_argument("--quic", default="127.0.0.1:4433", help="the server's QUIC address (for the devices)")
    p.add_argument("--device", required=True, help="path of the built examples/dtmf_device")
    p.add_argument("--media-dir", required=True, help="the server's [call_automation] media_dir")
    args = p.parse_args()
    cs = args.connection_string or open("data/connection-string").read().strip()
    os.environ.setdefault("REQUESTS_CA_BUNDLE", args.ca)

    identities = CommunicationIdentityClient.from_connection_string(cs)
    customer, customer_token = identities.create_user_and_token(scopes=["voip"])
    agent, agent_token = identities.create_user_and_token(scopes=["voip"])
    phones = [
        phone(args.device, args.quic, args.ca, customer_token.token, "one"),
        phone(args.device, args.quic, args.ca, agent_token.token, "zero"),
    ]
    write_menu(os.path.join(args.media_dir, "ivr-menu.wav"))
    events = Events()
    try:
        automation = CallAutomationClient.from_connection_string(cs)
        print("1. opening the support group call and putting the agent in it")
        support_group = str(uuid.uuid4())
        support = automation.connect_call(events.url, group_call_id=support_group)
        events.wait(support.call_connection_id, "CallConnected")
        group = automation.get_call_connection(support.call_connection_id)
        group.add_participant(CommunicationUserIdentifier(agent.properties["id"]), operation_context="agent")
        events.wait(support.call_connection_id, "AddParticipantSucceeded")

        print("2. calling the customer")
        created = automation.create_call(
            CommunicationUserIdentifier(customer.properties["id"]), events.url, source_display_name="Contoso IVR"
        )
        ivr_id = created.call_connection_id
        events.wait(ivr_id, "CallConnected")
        call = automation.get_call_connection(ivr_id)

        print("3. menu to the customer: 'press 1 for an agent', collecting one key")
        call.start_recognizing_media(
            RecognizeInputType.DTMF,
            CommunicationUserIdentifier(customer.properties["id"]),
            play_prompt=FileSource(url="ivr-menu.wav"),
            dtmf_max_tones_to_collect=1,
            initial_silence_timeout=10,
            operation_context="menu",
        )
        done = events.wait(ivr_id, "RecognizeCompleted", "RecognizeFailed")
        tones = (done.data.get("dtmfResult") or {}).get("tones", [])
        print(f"   the customer pressed {tones}")
        if tones != [DtmfTone.ONE.value]:
            sys.exit(f"FAILED: expected ['one'], got {done.type} {tones}")

        print("4. moving the customer into the support group call")
        group.add_participant(CommunicationUserIdentifier(customer.properties["id"]), operation_context="customer")
        events.wait(support.call_connection_id, "AddParticipantSucceeded")
        events.wait(ivr_id, "CallDisconnected")  # the customer left the IVR call for the group
        people = sorted(p.identifier.raw_id for p in group.list_participants())
        if people != sorted([customer.raw_id, agent.raw_id]):
            sys.exit(f"FAILED: participants of the support call {people}")

        print("5. the service leaves the support call; the customer and the agent stay")
        group.hang_up(is_for_everyone=False)
        events.wait(support.call_connection_id, "CallDisconnected")
        print("IVR flow passed")
        return 0
    finally:
        for proc in phones:
            proc.kill()
            proc.wait()
        events.server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
