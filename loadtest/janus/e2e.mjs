// One-off check of the Janus VideoRoom HTTP flow documented in README.md: a headless Chromium
// publisher with three simulcast layers, one Chromium subscriber, the subscriber's layer switched
// with `configure` + `substream`, and the admin API's per-handle counters. Run it inside the
// namespace netns.sh makes (Janus on 127.0.0.2), from the repository root:
//
//   loadtest/janus/netns.sh node loadtest/janus/e2e.mjs
//
// Every Janus request and response goes to $JANUS_E2E_LOG (default /tmp/janus-e2e.jsonl), SDPs
// included. Exits non-zero when a step fails.
import { chromium } from "../../tests/browser/node_modules/playwright-core/index.mjs";
import { RTCPeerConnection as WeriftPC } from "../../tests/browser/node_modules/werift/lib/index.mjs";
import { createServer } from "node:http";
import { appendFileSync, writeFileSync } from "node:fs";

const JANUS = process.env.JANUS_URL ?? "http://127.0.0.2:8088/janus";
const ADMIN = process.env.JANUS_ADMIN_URL ?? "http://127.0.0.2:7088/admin";
const ROOM = Number(process.env.JANUS_ROOM ?? 1234);
const LOG = process.env.JANUS_E2E_LOG ?? "/tmp/janus-e2e.jsonl";
writeFileSync(LOG, "");
const log = (dir, url, body) => appendFileSync(LOG, JSON.stringify({ t: Date.now(), dir, url, body }) + "\n");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let tx = 0;

async function post(url, body) {
  body = { transaction: `t${++tx}`, ...body };
  log(">", url, body);
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const json = await res.json();
  log("<", url, json);
  if (json.janus === "error") throw new Error(`${url}: ${JSON.stringify(json.error)}`);
  return json;
}

/** A Janus session with its long poll: events are kept until someone takes them. */
class Session {
  static async create() {
    const s = new Session();
    s.id = (await post(JANUS, { janus: "create" })).data.id;
    s.events = [];
    s.closed = false;
    s.poll();
    return s;
  }
  async poll() {
    while (!this.closed) {
      try {
        const url = `${JANUS}/${this.id}?maxev=10`;
        const res = await fetch(url);
        const json = await res.json();
        log("<poll", url, json);
        for (const e of Array.isArray(json) ? json : [json]) if (e.janus !== "keepalive") this.events.push(e);
      } catch (e) {
        if (!this.closed) console.error("long poll:", e.message);
        await sleep(200);
      }
    }
  }
  async attach() {
    const r = await post(`${JANUS}/${this.id}`, { janus: "attach", plugin: "janus.plugin.videoroom" });
    return r.data.id;
  }
  /** Send a plugin message; return the synchronous answer, or the async event with that transaction. */
  async message(handle, body, jsep) {
    const r = await post(`${JANUS}/${this.id}/${handle}`, { janus: "message", body, ...(jsep ? { jsep } : {}) });
    if (r.janus !== "ack") return r;
    return this.take((e) => e.transaction === r.transaction && e.janus === "event");
  }
  async take(pred, ms = 15000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.events.findIndex(pred);
      if (i >= 0) return this.events.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error(`no such event in ${ms} ms; have ${JSON.stringify(this.events)}`);
      await sleep(20);
    }
  }
  async destroy() {
    this.closed = true;
    await post(`${JANUS}/${this.id}`, { janus: "destroy" }).catch(() => {});
  }
}

const admin = (body) => post(ADMIN, { admin_secret: "janusoverlord", ...body });

const page = createServer((_, res) => res.end("<!doctype html><title>janus e2e</title>"));
await new Promise((r) => page.listen(0, "127.0.0.1", r));
const origin = `http://127.0.0.1:${page.address().port}/`;

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream", "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
  ],
});
let failed = false;
try {
  const pub = await browser.newPage();
  const sub = await browser.newPage();
  await pub.goto(origin);
  await sub.goto(origin);

  // ---- Publisher: join, then configure with the offer (all ICE candidates in it).
  const ps = await Session.create();
  const ph = await ps.attach();
  const joined = await ps.message(ph, { request: "join", ptype: "publisher", room: ROOM, display: "chromium-pub" });
  const feed = joined.plugindata.data.id;
  console.log("publisher joined as feed", feed, "private_id", joined.plugindata.data.private_id);
  // JANUS_E2E_LOW_FIRST=1 offers the rids lowest first, to see what Janus makes of that order.
  const lowFirst = process.env.JANUS_E2E_LOW_FIRST === "1";
  const offer = await pub.evaluate(async (lowFirst) => {
    const pc = new RTCPeerConnection({ iceServers: [] });
    window.pc = pc;
    const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 1280, height: 720 } });
    pc.addTransceiver(media.getAudioTracks()[0], { direction: "sendonly" });
    // Highest layer first: Janus takes the first rid as substream 2 (the top).
    pc.addTransceiver(media.getVideoTracks()[0], {
      direction: "sendonly",
      sendEncodings: lowFirst
        ? [{ rid: "q", scaleResolutionDownBy: 4 }, { rid: "h", scaleResolutionDownBy: 2 }, { rid: "f" }]
        : [{ rid: "f" }, { rid: "h", scaleResolutionDownBy: 2 }, { rid: "q", scaleResolutionDownBy: 4 }],
    });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => (pc.iceGatheringState === "complete" ? r() : pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && r())));
    return { type: "offer", sdp: pc.localDescription.sdp };
  }, lowFirst);
  const configured = await ps.message(ph, { request: "configure", audio: true, video: true }, offer);
  console.log("publisher configured:", JSON.stringify(configured.plugindata.data));
  await pub.evaluate((answer) => window.pc.setRemoteDescription(answer), configured.jsep);
  const up = await ps.take((e) => e.janus === "webrtcup" && e.sender === ph);
  console.log("publisher webrtcup", JSON.stringify(up));

  // ---- Subscriber: join with streams, Janus offers, start with the answer.
  const ss = await Session.create();
  // How a subscriber learns the feed ID: a publisher-type join that never publishes lists the
  // room's publishers (and later announces new ones as events); `listparticipants` answers at once.
  const lh = await ss.attach();
  const listed = await ss.message(lh, { request: "join", ptype: "publisher", room: ROOM, display: "listener" });
  console.log("listener joined:", JSON.stringify(listed.plugindata.data));
  const participants = await ss.message(lh, { request: "listparticipants", room: ROOM });
  console.log("listparticipants:", JSON.stringify(participants.plugindata.data));
  await ss.message(lh, { request: "leave" });
  const sh = await ss.attach();
  // substream in the stream entry: the layer to start with (checked in `attached` below).
  const attached = await ss.message(sh, { request: "join", ptype: "subscriber", room: ROOM, streams: [{ feed, substream: 0 }] });
  console.log("subscriber attached:", JSON.stringify(attached.plugindata.data));
  const answer = await sub.evaluate(async (offer) => {
    const pc = new RTCPeerConnection({ iceServers: [] });
    window.pc = pc;
    await pc.setRemoteDescription(offer);
    await pc.setLocalDescription(await pc.createAnswer());
    await new Promise((r) => (pc.iceGatheringState === "complete" ? r() : pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && r())));
    // The candidates go separately (trickle), to check that path too.
    const candidates = [];
    for (const [index, m] of pc.localDescription.sdp.split("\r\nm=").entries()) {
      const mid = /a=mid:(\S+)/.exec(m)?.[1];
      for (const c of m.matchAll(/a=(candidate:[^\r\n]+)/g)) candidates.push({ sdpMid: mid, sdpMLineIndex: index - 1, candidate: c[1] });
    }
    const sdp = pc.localDescription.sdp.replace(/a=candidate:[^\r\n]+\r\n/g, "").replace(/a=end-of-candidates\r\n/g, "");
    return { answer: { type: "answer", sdp }, candidates };
  }, attached.jsep);
  const started = await ss.message(sh, { request: "start" }, answer.answer);
  console.log("subscriber started:", JSON.stringify(started.plugindata.data));
  const trickled = await post(`${JANUS}/${ss.id}/${sh}`, { janus: "trickle", candidates: [...answer.candidates, { completed: true }] });
  console.log("trickle:", JSON.stringify(trickled), "candidates:", JSON.stringify(answer.candidates));
  await ss.take((e) => e.janus === "webrtcup" && e.sender === sh);

  const video = () => sub.evaluate(async () => {
    for (const s of (await window.pc.getStats()).values()) {
      if (s.type === "inbound-rtp" && s.kind === "video") return { framesDecoded: s.framesDecoded, frameWidth: s.frameWidth, frameHeight: s.frameHeight, packetsReceived: s.packetsReceived, packetsLost: s.packetsLost };
    }
    return null;
  });
  const videoMid = attached.plugindata.data.streams.find((s) => s.type === "video").mid;
  const layers = {};
  layers.initial = await (async () => {
    for (let i = 0; i < 20; i++) {
      await sleep(500);
      const v = await video();
      if (v?.framesDecoded > 10) return v;
    }
    return null;
  })();
  console.log("initial layer (join with substream 0):", JSON.stringify(layers.initial));
  for (const substream of [2, 0, 1, 2]) {
    const r = await ss.message(sh, { request: "configure", streams: [{ mid: videoMid, substream }] });
    if (substream === 0) console.log("configure substream answer:", JSON.stringify(r.plugindata.data));
    let v;
    const deadline = Date.now() + 15000;
    const before = (await video())?.framesDecoded ?? 0;
    do {
      await sleep(500);
      v = await video();
    } while (Date.now() < deadline && !(v && v.framesDecoded > before + 20));
    await sleep(1500);
    v = await video();
    layers[substream] = v;
    console.log(`substream ${substream}:`, JSON.stringify(v));
  }
  const pubStats = await pub.evaluate(async () => {
    const out = [];
    for (const s of (await window.pc.getStats()).values()) if (s.type === "outbound-rtp" && s.kind === "video") out.push({ rid: s.rid, frameWidth: s.frameWidth, frameHeight: s.frameHeight, packetsSent: s.packetsSent, framesPerSecond: s.framesPerSecond });
    return out;
  });
  console.log("publisher layers:", JSON.stringify(pubStats));
  // Simulcast events the subscriber got (substream changes).
  console.log("subscriber events:", JSON.stringify(ss.events.map((e) => e.plugindata?.data ?? e.janus)));

  // ---- A second subscriber that, like the load tester's str0m peers, has one host candidate,
  // 127.0.0.1 (werift bound to 127.0.0.1 only): Janus's candidate is 127.0.0.2 on jv0.
  const wh = await ss.attach();
  const wattached = await ss.message(wh, { request: "join", ptype: "subscriber", room: ROOM, streams: [{ feed, mid: videoMid, substream: 0 }] });
  // werift also gathers on jv0 (not flagged loopback): pairs from 127.0.0.2 are filtered out.
  const wpc = new WeriftPC({
    iceServers: [],
    iceAdditionalHostAddresses: ["127.0.0.1"],
    iceFilterCandidatePair: (pair) => pair.localCandidate.host === "127.0.0.1",
  });
  let wpackets = 0;
  let wbytes = 0;
  wpc.onTrack.subscribe((track) => track.kind === "video" && track.onReceiveRtp.subscribe((rtp) => { wpackets++; wbytes += rtp.payload.length; }));
  await wpc.setRemoteDescription(wattached.jsep);
  await wpc.setLocalDescription(await wpc.createAnswer());
  await new Promise((r) => (wpc.iceGatheringState === "complete" ? r() : wpc.iceGatheringStateChange.subscribe((s) => s === "complete" && r())));
  console.log("werift answer candidates:", JSON.stringify(wpc.localDescription.sdp.match(/a=candidate:[^\r\n]+/g)));
  const wsdp = wpc.localDescription.sdp.replace(/a=candidate:[^\r\n]* 127\.0\.0\.2 [^\r\n]*\r\n/g, "");
  console.log("werift answer candidates sent:", JSON.stringify(wsdp.match(/a=candidate:[^\r\n]+/g)));
  await ss.message(wh, { request: "start" }, { type: "answer", sdp: wsdp });
  await ss.take((e) => e.janus === "webrtcup" && e.sender === wh);
  // The subscription's own mid (here "0": it has one m-line), not the publisher's (feed_mid).
  const wmid = wattached.plugindata.data.streams[0].mid;
  console.log("werift subscription streams:", JSON.stringify(wattached.plugindata.data.streams));
  const wrate = {};
  for (const substream of [0, 2]) {
    await ss.message(wh, { request: "configure", streams: [{ mid: wmid, substream }] });
    await sleep(2000);
    const n0 = wpackets, b0 = wbytes;
    await sleep(3000);
    wrate[substream] = { pps: (wpackets - n0) / 3, kbps: Math.round(((wbytes - b0) * 8) / 3000) };
  }
  const winfo = (await post(`${ADMIN}/${ss.id}/${wh}`, { janus: "handle_info", admin_secret: "janusoverlord" })).info;
  console.log("werift subscriber video at substream 0 / 2:", JSON.stringify(wrate), "selected pair:", winfo.webrtc?.ice?.["selected-pair"]);
  console.log("werift subscriber events:", JSON.stringify(ss.events.filter((e) => e.sender === wh).map((e) => e.plugindata?.data ?? e.janus)));
  if (!(wrate[0].kbps > 0 && wrate[2].kbps > 2 * wrate[0].kbps)) throw new Error(`werift subscriber: rates ${JSON.stringify(wrate)}`);
  await ss.message(wh, { request: "leave" });
  await wpc.close();

  // ---- Admin API: per-handle counters.
  const sessions = (await admin({ janus: "list_sessions" })).sessions;
  for (const s of sessions) {
    const handles = (await admin({ janus: "list_handles", session_id: s })).handles;
    for (const h of handles) {
      const info = (await post(`${ADMIN}/${s}/${h}`, { janus: "handle_info", admin_secret: "janusoverlord" })).info;
      const media = Object.values(info.webrtc?.media ?? {}).map((m) => ({ type: m.type, mid: m.mid, in: m.stats?.in?.packets, out: m.stats?.out?.packets }));
      console.log(`admin handle ${h} (${info.plugin_specific?.type ?? "?"}):`, JSON.stringify(media));
    }
  }
  const sub0 = await video();
  await sleep(2000);
  const sub1 = await video();
  console.log(`subscriber video rate: ${(sub1.packetsReceived - sub0.packetsReceived) / 2} pkt/s`);

  const w = (k) => layers[k]?.frameWidth ?? 0;
  // Janus numbers the layers by their place in the offer: the first rid is substream 2.
  const ordered = lowFirst ? w(2) > 0 && w(2) < w(1) && w(1) < w(0) : w(0) > 0 && w(0) < w(1) && w(1) < w(2);
  if (!ordered) throw new Error(`layers not as expected (low first: ${lowFirst}): ${JSON.stringify(layers)}`);
  console.log("OK: substream 0/1/2 ->", w(0), w(1), w(2));
  await ss.destroy();
  await ps.destroy();
} catch (e) {
  failed = true;
  console.error("FAILED:", e);
} finally {
  await browser.close();
  page.close();
}
process.exit(failed ? 1 : 0);
