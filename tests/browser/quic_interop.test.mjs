// A browser and a QUIC client in the same call: the QUIC client records the browser's VP8 and
// Opus through QUIC subscriptions, then publishes that real media back; the browser decodes it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { spawn } from "node:child_process";
import { join, dirname } from "node:path";
import { mkdirSync, writeFileSync } from "node:fs";
import { startServer, launchBrowser, joinDemo, subscriptionStats, waitUntil, switchboardBin } from "./harness.mjs";

// SWITCHBOARD_FUZZ_CAPTURE=dir: also write some of the recorded packets, and the browser's SDP
// offer, to dir as fuzzing seeds (fuzz/README.md).
const captureDir = process.env.SWITCHBOARD_FUZZ_CAPTURE;

function quicPeer(server, token, group) {
  const bin = join(dirname(switchboardBin()), "examples", "quic_peer");
  const args = ["--quic", server.quic, "--ca", server.ca, "--token", token, "--group", group, "--record-seconds", "4"];
  if (captureDir) args.push("--capture-dir", captureDir);
  const child = spawn(bin, args, {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const events = [];
  let buf = "";
  child.stdout.on("data", (c) => {
    buf += c;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      events.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
  return { child, events };
}

test("a QUIC client and a browser exchange real VP8 and Opus", async () => {
  const server = await startServer();
  const browser = await launchBrowser();
  let peer;
  try {
    const group = randomUUID();
    const page = await joinDemo(browser, server.endpoint, group);
    const { token } = await server.devToken();
    peer = quicPeer(server, token, group);
    // The QUIC client receives the browser's video (with keyframes) and audio.
    const recorded = await waitUntil(() => peer.events.find((e) => e.event === "recorded"), 30_000, "the QUIC client's recording");
    assert.ok(recorded.videoPackets > 50, `video packets over QUIC: ${recorded.videoPackets}`);
    assert.ok(recorded.keyframes >= 1, "a keyframe arrived over QUIC");
    assert.equal(recorded.width, 320, "the low layer (320x180) was requested");
    assert.ok(recorded.audioPackets > 50, `audio packets over QUIC: ${recorded.audioPackets}`);
    if (captureDir) {
      const offer = await page.evaluate(() => {
        const d = window.demo.sb?.pc?.localDescription;
        return d?.type === "offer" ? d.sdp : null;
      });
      assert.ok(offer, "the browser's last local description is an offer");
      mkdirSync(join(captureDir, "sdp_offer"), { recursive: true });
      // The sdp_offer target's first byte says which media lines may send.
      writeFileSync(join(captureDir, "sdp_offer", "chromium_allow_all"), Buffer.concat([Buffer.from([0xff]), Buffer.from(offer)]));
      writeFileSync(join(captureDir, "sdp_offer", "chromium_refuse_some"), Buffer.concat([Buffer.from([0x05]), Buffer.from(offer)]));
    }
    await waitUntil(() => peer.events.find((e) => e.event === "publishing"), 10_000, "the QUIC client publishing");
    // The browser decodes the QUIC client's VP8 and Opus.
    const quicParticipant = peer.events.find((e) => e.event === "joined").participantId;
    const video = await waitUntil(async () => {
      const v = (await subscriptionStats(page, "video")).find((s) => s.participantId === quicParticipant);
      return v && v.framesDecoded > 30 && v.frameWidth === 320 ? v : null;
    }, 30_000, "the browser decoding the QUIC client's video");
    assert.ok(video.frameWidth > 0);
    const audio = await waitUntil(async () => {
      const a = (await subscriptionStats(page, "audio")).find((s) => s.participantId === quicParticipant);
      return a && a.totalSamplesReceived > 48_000 ? a : null;
    }, 20_000, "the browser decoding the QUIC client's audio");
    assert.ok(audio.packetsReceived > 50);
  } finally {
    peer?.child.kill("SIGTERM");
    await browser.close();
    await server.stop();
  }
});
