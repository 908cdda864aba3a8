// Subscribers on a second, independent WebRTC stack: werift (Node.js), signaling from
// docs/PROTOCOL.md. werift's transport-wide congestion control feedback is not one str0m's
// estimator can use (media/webrtc_bwe.rs says why), and by default it negotiates none: the
// estimate toward it never moved off its initial value, so on a clean link it sat on the layer
// that value fits for the whole call. The server must find that out and ramp it up from its
// receiver reports, while a Chromium subscriber in the same call stays on TWCC.
//
// The initial estimate is lowered to 300 kbit/s, below the top layer of Chromium's fake camera,
// so that every subscriber has to ramp up to reach it.
//
// Runs under `node --experimental-websocket` on Node 20 (scripts/test passes it), for the
// global WebSocket.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { RTCPeerConnection, useTransportWideCC, useSdesMid, useAbsSendTime } from "werift";
import { startServer, launchBrowser, openDemo, signIn, joinDemo, subscriptionStats, waitUntil, sleep } from "./harness.mjs";

// The server's certificate is its own self-signed one, and Node's WebSocket takes no CA option:
// this process talks to nothing but the test server on loopback.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";

/** A receive-only werift participant: joins, subscribes to every video track, answers offers. */
class WeriftSubscriber {
  constructor(server, { twcc }) {
    this.server = server;
    this.nextId = 1;
    this.layers = []; // layerChanged events, in order
    this.bytes = 0; // video payload bytes received
    this.errors = [];
    this.chain = Promise.resolve();
    const headerExtensions = twcc
      ? { audio: [useSdesMid(), useTransportWideCC()], video: [useSdesMid(), useAbsSendTime(), useTransportWideCC()] }
      : {};
    // The test runs in a network namespace with only loopback, which werift does not gather by
    // default.
    this.pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", headerExtensions, iceAdditionalHostAddresses: ["127.0.0.1"] });
    this.pc.ontrack = ({ track }) => {
      if (track.kind === "video") track.onReceiveRtp.subscribe((rtp) => (this.bytes += rtp.payload.length));
    };
  }

  async join(token, groupId) {
    this.ws = new WebSocket(this.server.endpoint.replace(/^https/, "wss") + "signal");
    await new Promise((resolve, reject) => {
      this.ws.onopen = resolve;
      this.ws.onerror = () => reject(new Error("WebSocket error"));
    });
    this.ws.onmessage = (e) => this.onMessage(JSON.parse(e.data));
    this.send({ type: "join", token, groupId });
  }

  send(message) {
    this.ws.send(JSON.stringify({ ...message, id: this.nextId++ }));
  }

  onMessage(msg) {
    if (msg.type === "joined") {
      for (const p of msg.participants) for (const t of p.tracks) this.subscribe(t);
    } else if (msg.type === "trackPublished") {
      this.subscribe(msg.track);
    } else if (msg.type === "offer") {
      // One negotiation at a time; we never offer, so every server offer is answered.
      this.chain = this.chain.then(async () => {
        await this.pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
        await this.pc.setLocalDescription(await this.pc.createAnswer());
        this.send({ type: "answer", offerId: msg.offerId, sdp: this.pc.localDescription.sdp });
      }).catch((e) => this.errors.push(String(e)));
    } else if (msg.type === "layerChanged") {
      this.layers.push(msg.layer);
    } else if (msg.type === "error") {
      this.errors.push(`${msg.code}: ${msg.message}`);
    }
  }

  subscribe(track) {
    if (track.kind === "video") this.send({ type: "subscribe", trackId: track.trackId });
  }

  /** Video received over the next `ms`, in kbit/s. */
  async rateKbps(ms) {
    const before = this.bytes;
    await sleep(ms);
    return ((this.bytes - before) * 8) / ms;
  }

  async close() {
    this.ws?.close();
    await this.pc.close();
  }
}

function fallbacks(text, reason) {
  const line = text.split("\n").find((l) => l.startsWith(`switchboard_webrtc_bwe_fallbacks_total{reason="${reason}"}`));
  return line ? Number(line.split(" ").pop()) : 0;
}

test("werift subscribers ramp up to the top layer; a Chromium subscriber stays on TWCC", async () => {
  const server = await startServer({ env: { SWITCHBOARD__WEBRTC__INITIAL_BITRATE_KBPS: "300" } });
  const browser = await launchBrowser();
  const subs = [];
  try {
    const group = randomUUID();
    await joinDemo(browser, server.endpoint, group, { subscribe: false });
    // A Chromium subscriber that publishes nothing, so the werift subscribers see one video.
    const viewer = await openDemo(browser, server.endpoint, `#group=${group}&camera=off&mic=off`);
    await signIn(viewer);
    await viewer.click("#join-group");
    await viewer.waitForFunction(() => window.demo.joined === true, null, { timeout: 30_000 });
    for (const twcc of [true, false]) {
      const sub = new WeriftSubscriber(server, { twcc });
      subs.push(sub);
      await sub.join((await server.devToken()).token, group);
    }
    const [withTwcc, withoutTwcc] = subs;
    // The top layer (2), and staying there.
    await waitUntil(() => withTwcc.layers.at(-1) === 2 && withTwcc.layers.length >= 2, 30_000, "werift with TWCC on the top layer");
    await waitUntil(() => withoutTwcc.layers.at(-1) === 2, 30_000, "werift without TWCC on the top layer");
    await sleep(3000);
    assert.equal(withTwcc.layers.at(-1), 2, `with TWCC, layers: ${withTwcc.layers}`);
    assert.equal(withoutTwcc.layers.at(-1), 2, `without TWCC, layers: ${withoutTwcc.layers}`);
    // It really arrives: the top layer of the fake camera is several hundred kbit/s, more than
    // the 300 kbit/s initial estimate, and more than the layer below takes.
    const [a, b] = await Promise.all([withTwcc.rateKbps(3000), withoutTwcc.rateKbps(3000)]);
    console.log(`received: ${a.toFixed(0)} kbit/s (TWCC) and ${b.toFixed(0)} kbit/s (none); layers ${withTwcc.layers} and ${withoutTwcc.layers}`);
    assert.ok(a > 350, `werift with TWCC receives ${a.toFixed(0)} kbit/s`);
    assert.ok(b > 350, `werift without TWCC receives ${b.toFixed(0)} kbit/s`);
    // Chromium's TWCC works, so it is never switched (it decodes what it gets; its layer is
    // whatever its own estimate allows on this busy two-core machine).
    const viewed = (await subscriptionStats(viewer, "video"))[0];
    assert.ok(viewed?.framesDecoded > 0, `Chromium decodes: ${JSON.stringify(viewed)}`);
    const text = await server.metricsText();
    assert.equal(fallbacks(text, "twcc_stuck"), 1, "only werift with TWCC: its estimate never moved");
    assert.equal(fallbacks(text, "no_twcc"), 1, "only werift without TWCC");
    for (const s of subs) assert.deepEqual(s.errors, []);
  } finally {
    for (const s of subs) await s.close().catch(() => {});
    await browser.close();
    await server.stop();
  }
});
