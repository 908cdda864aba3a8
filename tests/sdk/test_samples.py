"""The samples in `samples/` run end to end against a real server, as the README tells people to
run them: `three_flows.py` with the auth service in-process, and `ivr.py` with QUIC devices
(examples/dtmf_device.rs) as the customer's and the agent's phones; exit 0 or the test fails
with its output."""

import atexit
import shutil
import os
import pathlib
import subprocess
import sys
import tempfile

from conftest import example

# Flow (c) needs contoso.com to be the organization (its members skip the meeting lobby), as the
# README's command starts the server.
# ivr.py writes its menu prompt into the server's media directory.
MEDIA_DIR = tempfile.mkdtemp(prefix="sb-ivr-media-")
atexit.register(shutil.rmtree, MEDIA_DIR, ignore_errors=True)
SERVER_ENV = {
    "SWITCHBOARD__ORGANIZATION__MEMBER_DOMAINS": '["*@contoso.com"]',
    "SWITCHBOARD__CALL_AUTOMATION__MEDIA_DIR": MEDIA_DIR,
}

SAMPLES = pathlib.Path(__file__).parents[2] / "samples"


def test_three_flows(server):
    # The samples read SWITCHBOARD_* defaults from the environment (e.g. SWITCHBOARD_AUTH_SERVICE);
    # a developer's settings must not point this run at another server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    result = subprocess.run(
        [
            sys.executable,
            str(SAMPLES / "three_flows.py"),
            "--endpoint",
            server.endpoint,
            "--ca",
            server.ca,
            "--connection-string",
            server.connection_string,
        ],
        env=env,
        capture_output=True,
        text=True,
        # Every step has its own timeout; this only stops a script that would hang anyway.
        timeout=240,
    )
    assert result.returncode == 0, f"three_flows.py exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert "all 3 flows passed" in result.stdout, result.stdout


def test_ivr(server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env["REQUESTS_CA_BUNDLE"] = server.ca
    result = subprocess.run(
        [
            sys.executable,
            str(SAMPLES / "ivr.py"),
            "--connection-string",
            server.connection_string,
            "--ca",
            server.ca,
            "--quic",
            server.quic,
            "--device",
            example("dtmf_device"),
            "--media-dir",
            MEDIA_DIR,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"ivr.py exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert "IVR flow passed" in result.stdout, result.stdout
    assert "4. moving the customer into the support group call" in result.stdout, result.stdout
