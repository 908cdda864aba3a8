// A client that lists its simulcast encodings highest first (nothing in the protocol says it must
// not, and its SDP declares no resolutions): the server watches the layers arrive, puts them
// lowest first, and a subscriber that asks for layer 0 gets the publisher's smallest one. (Before,
// layer 0 was the rid listed first: the viewer got the largest.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startServer, launchBrowser, openDemo, waitUntil } from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));

async function literalClient(browser, server, group) {
  const page = await openDemo(browser, server.endpoint);
  await page.addScriptTag({ path: join(here, "literal_client.js") });
  const { token } = await server.devToken();
  const joined = await page.evaluate(async ({ token, group }) => {
    window.lc = new window.LiteralClient(`wss://${location.host}/signal`);
    await window.lc.connect();
    return window.lc.join(token, group);
  }, { token, group });
  return { page, joined };
}

test("simulcast layers listed highest first are forwarded lowest first", async () => {
  const server = await startServer();
  const browser = await launchBrowser();
  try {
    const group = randomUUID();
    const publisher = await literalClient(browser, server, group);
    await publisher.page.evaluate(async () => {
      // 720p: Chrome sends three layers only from 960x540 up.
      const stream = await navigator.mediaDevices.getUserMedia({ audio: false, video: { width: 1280, height: 720 } });
      await window.lc.publish(stream, [{ rid: "f" }, { rid: "h", scaleResolutionDownBy: 2 }, { rid: "q", scaleResolutionDownBy: 4 }]);
    });
    // The publisher's three layers, by rid, as it encodes them now.
    const sending = () => publisher.page.evaluate(async () => {
      const out = {};
      for (const s of (await window.lc.pc.getStats()).values()) {
        if (s.type === "outbound-rtp" && s.kind === "video" && s.frameHeight) out[s.rid] = s.frameHeight;
      }
      return out;
    });
    // Chrome leaves the smallest layer out of a smaller capture (it adapts the capture on a busy
    // machine): two layers are enough to tell their order.
    await waitUntil(async () => Object.keys(await sending()).length >= 2, 30_000, "the publisher sending two layers or more");

    const viewer = await literalClient(browser, server, group);
    const track = viewer.joined.participants.flatMap((p) => p.tracks ?? []).find((t) => t.kind === "video");
    assert.ok(track, "the viewer sees the published video");
    const sub = await viewer.page.evaluate((trackId) => window.lc.request({ type: "subscribe", trackId, preferredLayer: 0 }), track.trackId);
    assert.equal(sub.type, "subscribed", JSON.stringify(sub));
    let last;
    await waitUntil(async () => {
      const [stats, layers] = await Promise.all([viewer.page.evaluate((s) => window.lc.videoStats(s), sub.streamId), sending()]);
      last = { received: stats.frameHeight, decoded: stats.framesDecoded, layers };
      return stats.framesDecoded > 10 && stats.frameHeight === Math.min(...Object.values(layers));
    }, 30_000, "the viewer decoding the smallest layer sent").catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify(last)}`);
    });
    assert.equal(await server.metric("switchboard_simulcast_reorders_total"), 1, "the layers were reordered once");
  } finally {
    await browser.close();
    await server.stop();
  }
});
