"""The samples in `samples/` run end to end against a real server, as the README tells people to
run them: `three_flows.py` with the auth service in-process, exit 0 or the test fails with its
output."""

import os
import pathlib
import subprocess
import sys

# Flow (c) needs contoso.com to be the organization (its members skip the meeting lobby), as the
# README's command starts the server.
SERVER_ENV = {"SWITCHBOARD__ORGANIZATION__MEMBER_DOMAINS": '["*@contoso.com"]'}

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
