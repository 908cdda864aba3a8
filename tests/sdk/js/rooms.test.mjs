// Starts a real `switchboard serve` on loopback and runs flow.mjs (the official ACS JavaScript
// identity and rooms SDKs) against it, trusting the server's CA through NODE_EXTRA_CA_CERTS.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../../..");

function binary() {
  if (process.env.SWITCHBOARD_BIN) return process.env.SWITCHBOARD_BIN;
  return join(process.env.CARGO_TARGET_DIR ?? join(root, "target"), "debug", "switchboard");
}

async function startServer() {
  const dir = mkdtempSync(join(tmpdir(), "sb-js-sdk-"));
  const child = spawn(binary(), ["serve"], {
    cwd: dir,
    env: {
      ...process.env,
      RUST_LOG: "warn",
      SWITCHBOARD__SERVER__DATA_DIR: join(dir, "data"),
      SWITCHBOARD__HTTP__LISTEN: "127.0.0.1:0",
      SWITCHBOARD__QUIC__LISTEN: "127.0.0.1:0",
      SWITCHBOARD__WEBRTC__PORT_START: "0",
      SWITCHBOARD__SERVER__SHUTDOWN_GRACE_SECONDS: "1",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = await new Promise((ok, fail) => {
    let buf = "";
    const timer = setTimeout(() => fail(new Error("server did not become ready")), 60_000);
    child.stdout.on("data", (c) => {
      buf += c;
      const ready = buf.split("\n").find((l) => l.startsWith("switchboard ready"));
      if (ready) {
        clearTimeout(timer);
        ok(ready);
      }
    });
    child.on("exit", (code) => fail(new Error(`server exited with ${code}`)));
  });
  return {
    ca: resolve(dir, /\(trust ([^;]+);/.exec(line)[1]),
    connectionString: readFileSync(join(dir, "data", "connection-string"), "utf8").trim(),
    stop: async () => {
      await new Promise((r) => child.on("exit", r) && child.kill("SIGTERM"));
      if (!process.env.SB_KEEP_TMP) rmSync(dir, { recursive: true, force: true });
    },
  };
}

test("the official ACS JavaScript identity and rooms SDKs work unmodified", async () => {
  const server = await startServer();
  try {
    const { stdout, stderr, code } = await new Promise((done) => {
      execFile(
        process.execPath,
        [join(here, "flow.mjs")],
        { env: { ...process.env, NODE_EXTRA_CA_CERTS: server.ca, SB_CONNECTION_STRING: server.connectionString } },
        (err, stdout, stderr) => done({ stdout, stderr, code: err ? err.code : 0 }),
      );
    });
    assert.equal(code, 0, `flow.mjs failed:\n${stderr}`);
    assert.equal(JSON.parse(stdout.trim().split("\n").pop()).ok, true);
  } finally {
    await server.stop();
  }
});
