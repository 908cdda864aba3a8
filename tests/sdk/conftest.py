"""Start a real `switchboard serve` process on an ephemeral loopback port for the SDK tests."""

import os
import pathlib
import shutil
import subprocess
import tempfile
import threading

import pytest


def example(name: str) -> str:
    """The path of a built example binary (`cargo test --all-targets` builds them)."""
    target = os.environ.get("CARGO_TARGET_DIR", str(pathlib.Path(__file__).parents[2] / "target"))
    path = os.path.join(target, "debug", "examples", name)
    if not os.path.exists(path):
        raise RuntimeError(f"example {name} not found at {path}; run `cargo build --example {name}`")
    return path


def _binary() -> str:
    path = os.environ.get("SWITCHBOARD_BIN")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR", str(pathlib.Path(__file__).parents[2] / "target"))
        path = os.path.join(target, "debug", "switchboard")
    if not os.path.exists(path):
        raise RuntimeError(f"switchboard binary not found at {path}; run `cargo build` or set SWITCHBOARD_BIN")
    return path


class Server:
    def __init__(self, proc, endpoint, ca, connection_string, data_dir, quic=None):
        self.proc = proc
        # The QUIC listener (host:port), for QUIC devices (examples/dtmf_device.rs).
        self.quic = quic
        self.endpoint = endpoint
        self.ca = ca
        self.connection_string = connection_string
        self.data_dir = data_dir


@pytest.fixture(scope="module")
def server(request):
    """One server per test module; a module may set `SERVER_ENV` (a dict) for config overrides."""
    workdir = tempfile.mkdtemp(prefix="sb-sdk-")
    env = dict(os.environ)
    env.update(
        SWITCHBOARD__SERVER__DATA_DIR=os.path.join(workdir, "data"),
        SWITCHBOARD__HTTP__LISTEN="127.0.0.1:0",
        SWITCHBOARD__QUIC__LISTEN="127.0.0.1:0",
        SWITCHBOARD__WEBRTC__PORT_START="0",
    )
    env.update(getattr(request.module, "SERVER_ENV", {}))
    env.pop("RUST_LOG", None)
    log = open(os.path.join(workdir, "server.log"), "wb")
    proc = subprocess.Popen([_binary(), "serve"], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=log)
    ready = {}

    def read():
        for raw in proc.stdout:
            line = raw.decode()
            if line.startswith("switchboard ready") and "line" not in ready:
                ready["line"] = line
                event.set()

    event = threading.Event()
    threading.Thread(target=read, daemon=True).start()
    if not event.wait(60):
        proc.kill()
        raise RuntimeError("server did not become ready: " + open(log.name).read())
    line = ready["line"]
    endpoint = line.split()[2]
    ca = os.path.join(workdir, line.split("(trust ")[1].split(";")[0])
    cs = open(os.path.join(workdir, "data", "connection-string")).read().strip()
    old_bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = ca
    try:
        quic = line.split("quic=")[1].split()[0] if "quic=" in line else None
        yield Server(proc, endpoint, ca, cs, os.path.join(workdir, "data"), quic)
    finally:
        if old_bundle is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = old_bundle
        proc.terminate()
        proc.wait(30)
        log.close()
        if not os.environ.get("SB_KEEP_TMP"):
            shutil.rmtree(workdir, ignore_errors=True)
