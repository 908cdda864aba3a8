"""Schemathesis against a live server, driven by the server's own /openapi.json: every documented
operation gets generated valid and invalid requests (examples, coverage of boundaries and
negative cases, then random fuzzing), each signed with ACS HMAC like an SDK would sign it. Any
5xx, any status, header, content type or body the document does not describe, and any invalid
request that is not refused with a 4xx fails the test.

So that generated requests reach past "not found", a few real identities, rooms and meetings are
made first and offered to the generator (schemathesis dictionaries) for IDs in paths and bodies
half of the time; the rest are generated as usual.

Bounded and deterministic: a fixed seed, `--max-examples` per operation, one worker.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

import requests

from hmac_signing import HmacAuth

SERVER_ENV = {
    # The dev token endpoint is part of the document; exercise it enabled.
    "SWITCHBOARD__DEV__TOKEN_ENDPOINT": "true",
}

HERE = pathlib.Path(__file__).parent
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
        "ignored_auth",
    ]
)
MAX_EXAMPLES = os.environ.get("SWITCHBOARD_SCHEMATHESIS_EXAMPLES", "100")
SEED = os.environ.get("SWITCHBOARD_SCHEMATHESIS_SEED", "13")


def test_openapi_document_is_public_and_lists_the_api(server):
    response = requests.get(server.endpoint.rstrip("/") + "/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    for path in ["/identities/{id}/:issueAccessToken", "/rooms/{id}/participants", "/meetings/{id}/lobby:admit"]:
        assert path in doc["paths"], path
    assert set(doc["components"]["securitySchemes"]) == {"hmac-sha256"}


def make_test_data(server) -> dict[str, list[str]]:
    """Real objects for the generator: several of each, as DELETE operations use them up."""
    base = server.endpoint.rstrip("/")
    auth = HmacAuth(server.connection_string)

    def post(path, body):
        response = requests.post(base + path, json=body, auth=auth, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()

    identities = [post("/identities?api-version=2023-10-01", {})["identity"]["id"] for _ in range(6)]
    rooms = [
        post("/rooms?api-version=2024-04-15", {"participants": {identities[0]: {"role": "Presenter"}}})["id"]
        for _ in range(4)
    ]
    meetings = [
        post(
            "/meetings",
            {
                "participants": {
                    "organizer": {"identity": {"user": {"id": identities[i]}}},
                    "attendees": [{"identity": {"user": {"id": identities[i + 1]}}, "role": "presenter"}],
                }
            },
        )["id"]
        for i in range(4)
    ]
    return {"identities": identities, "rooms": rooms, "meetings": meetings}


def schemathesis_config(data: dict[str, list[str]]) -> str:
    """Dictionaries of real IDs, bound to the parameters and body fields that take them."""

    def values(items):
        return "[" + ", ".join(json.dumps(v) for v in items) + "]"

    def bind(dictionary):
        return f'{{ dictionary = "{dictionary}", probability = 0.5 }}'

    return f"""
[dictionaries.identities]
values = {values(data["identities"])}
[dictionaries.rooms]
values = {values(data["rooms"])}
[dictionaries.meetings]
values = {values(data["meetings"])}

[[operations]]
include-path-regex = "^/identities/"
parameters = {{ "path.id" = {bind("identities")} }}

[[operations]]
include-path-regex = "^/rooms/"
parameters = {{ "path.id" = {bind("rooms")} }}

[[operations]]
include-path-regex = "^/meetings/[^/]+/lobby:"
parameters = {{ "path.id" = {bind("meetings")}, "body.participants[*]" = {bind("identities")} }}

[[operations]]
include-path-regex = "^/meetings"
parameters = {{ "path.id" = {bind("meetings")}, "body.participants.organizer.identity.user.id" = {bind("identities")}, "body.participants.attendees[*].identity.user.id" = {bind("identities")} }}
"""


def test_schemathesis_finds_nothing(server, tmp_path):
    (tmp_path / "schemathesis.toml").write_text(schemathesis_config(make_test_data(server)))
    schemathesis = pathlib.Path(sys.executable).parent / "schemathesis"
    env = dict(os.environ)
    env.update(
        SWITCHBOARD_CONNECTION_STRING=server.connection_string,
        SCHEMATHESIS_HOOKS="schemathesis_hooks",
        PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")])),
        # No colours, no progress bars: CI logs.
        NO_COLOR="1",
        COLUMNS="120",
    )
    command = [
        str(schemathesis),
        "run",
        server.endpoint.rstrip("/") + "/openapi.json",
        "--tls-verify",
        server.ca,
        "--checks",
        CHECKS,
        "--mode",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        "--workers",
        "1",
        "--request-timeout",
        "10",
        # A network error that does not repeat is retried: once in CI, on a machine loaded by
        # parallel builds, one request of the coverage phase met a connection closed under it
        # (not reproducible with the same seed). A server that drops the connection for a given
        # input does so on every retry, and still fails the run.
        "--request-retries",
        "2",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    started = time.monotonic()
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    took = time.monotonic() - started
    output = run.stdout + run.stderr
    print(output)
    print(f"schemathesis took {took:.0f} s")
    if run.returncode != 0:
        log = pathlib.Path(server.data_dir).parent / "server.log"
        print("server log (tail):\n" + (log.read_text(errors="replace")[-20000:] if log.exists() else "(none)"))
    assert run.returncode == 0, output[-20000:]
    assert "No issues found" in output or "passed" in output, output[-5000:]
