// A browser's network goes away for longer than ICE consent lasts, then comes back: the server
// keeps both participants in the call through `[webrtc] reconnect_grace_seconds`, the SDK
// restarts ICE, and video flows again both ways. Every WebRTC packet goes through a UDP relay of
// the test's own (the server announces the relay as its candidate), which is cut for 24 s: past
// the 15 s after which the server's ICE-lite agent declares a browser gone. Page A restarts ICE
// early (the SDK's default: 4 s after Chrome calls the connection "disconnected"), before the
// server gives up on it; page B late (18 s), after: the grace period is what keeps it. Without
// the restart, Chrome does not come back at all (its checks do not nominate a pair again).
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import dgram from "node:dgram";
import { startServer, launchBrowser, joinDemo, subscriptionStats, waitUntil, sleep } from "./harness.mjs";

/** A free UDP port on 127.0.0.1 (released before the server binds it). */
async function freePort() {
  const s = dgram.createSocket("udp4");
  await new Promise((r) => s.bind(0, "127.0.0.1", r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * Relay `listen` to `server`: each client gets an upstream socket of its own, so the server sees
 * one address per client. `cut()` drops everything both ways until `restore()`.
 */
async function startRelay(listen, server) {
  const front = dgram.createSocket("udp4");
  await new Promise((r) => front.bind(listen.port, listen.ip, r));
  const upstreams = new Map();
  let cut = false;
  front.on("message", async (msg, from) => {
    if (cut) return;
    const key = `${from.address}:${from.port}`;
    let up = upstreams.get(key);
    if (!up) {
      up = dgram.createSocket("udp4");
      upstreams.set(key, up);
      up.on("message", (back) => {
        if (!cut) front.send(back, from.port, from.address);
      });
      up.bind(0, "127.0.0.1");
    }
    up.send(msg, server.port, server.ip);
  });
  return {
    cut: () => (cut = true),
    restore: () => (cut = false),
    close() {
      for (const up of upstreams.values()) up.close();
      front.close();
    },
  };
}

/** Video frames `page` decodes over `ms`, or 0 when it has no video subscription. */
async function decodedOver(page, ms) {
  const before = (await subscriptionStats(page, "video"))[0]?.framesDecoded ?? 0;
  await sleep(ms);
  const after = (await subscriptionStats(page, "video"))[0]?.framesDecoded ?? 0;
  return after - before;
}

test("a browser whose network drops for 24 s comes back into the call", async () => {
  const port = await freePort();
  const server = await startServer({
    env: {
      SWITCHBOARD__MEDIA__WORKERS: "1",
      SWITCHBOARD__WEBRTC__PORT_START: String(port),
      SWITCHBOARD__WEBRTC__PUBLIC_IPS: '["127.0.0.2"]',
      SWITCHBOARD__WEBRTC__RECONNECT_GRACE_SECONDS: "40",
    },
  });
  const relay = await startRelay({ ip: "127.0.0.2", port }, { ip: "127.0.0.1", port });
  const browser = await launchBrowser();
  const ice = (event) => server.metric(`switchboard_webrtc_ice_events_total{event="${event}"}`);
  try {
    const group = randomUUID();
    const a = await joinDemo(browser, server.endpoint, group);
    const b = await joinDemo(browser, server.endpoint, group);
    for (const [name, page] of [["A", a], ["B", b]]) {
      await waitUntil(async () => (await decodedOver(page, 1000)) > 10, 30_000, `page ${name} decoding video`);
    }
    await b.evaluate(() => (window.demo.sb.iceRestartAfterMs = 18_000));

    relay.cut();
    await sleep(24_000);
    assert.equal(await decodedOver(a, 1000), 0, "nothing reaches the pages while the network is away");
    const restartsWhileCut = await b.evaluate(() => window.demo.sb.iceRestarts ?? 0);
    assert.ok((await ice("lost")) >= 2, `the server lost both browsers (lost=${await ice("lost")})`);
    assert.ok(restartsWhileCut <= 1, `page B restarted late (${restartsWhileCut} restarts in 24 s)`);
    relay.restore();

    for (const [name, page] of [["A", a], ["B", b]]) {
      await waitUntil(async () => (await decodedOver(page, 1000)) > 10, 30_000, `page ${name} decoding video again`);
      const state = await page.evaluate(() => ({ joined: window.demo.joined, callState: window.demo.callState }));
      assert.deepEqual(state, { joined: true, callState: "Connected" }, `page ${name} stayed in the call`);
      const restarts = await page.evaluate(() => window.demo.sb.iceRestarts ?? 0);
      assert.ok(restarts >= 1, `page ${name} restarted ICE (${restarts})`);
    }
    assert.equal(await ice("expired"), 0, "nobody was dropped");
    assert.ok((await ice("restarted")) >= 2, `both restarts reached the server (restarted=${await ice("restarted")})`);
    assert.ok((await ice("recovered")) >= 2, `both came back (recovered=${await ice("recovered")})`);
  } finally {
    await browser.close();
    relay.close();
    await server.stop();
  }
});
