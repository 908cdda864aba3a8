// Renegotiation as real clients meet it (issue 10, items 1, 3 and 4): glare handled by a client
// written from docs/PROTOCOL.md alone, a receive-only participant after the last publisher left,
// and a layer wish made while the subscription is still being negotiated.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { startServer, launchBrowser, openDemo, signIn, joinDemo, subscriptionStats, waitUntil, sleep } from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));

/** The participant IDs whose video `page` decodes (more than `frames` frames). */
async function decodingFrom(page, frames = 10) {
  return (await subscriptionStats(page, "video")).filter((s) => s.framesDecoded > frames).map((s) => s.participantId);
}

test("a client following PROTOCOL.md's glare rules literally negotiates through crossing offers", async () => {
  const server = await startServer();
  const browser = await launchBrowser();
  try {
    const group = randomUUID();
    const publisher = await joinDemo(browser, server.endpoint, group);
    await waitUntil(() => publisher.evaluate(() => window.demo.sb.published.size >= 2), 30_000, "the publisher publishing");
    for (let run = 1; run <= 3; run++) {
      const page = await openDemo(browser, server.endpoint);
      await page.addScriptTag({ path: join(here, "literal_client.js") });
      const { token } = await server.devToken();
      const { participantId, videoStream } = await page.evaluate(async ({ token, group }) => {
        const c = new window.LiteralClient(`wss://${location.host}/signal`);
        window.lc = c;
        await c.connect();
        const joined = await c.join(token, group);
        const tracks = joined.participants.flatMap((p) => p.tracks ?? []);
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
        // Subscribe and publish at once: the server's offer for the subscriptions and ours cross.
        const subscribing = tracks.map((t) => c.subscribe(t.trackId));
        const publishing = c.publish(stream);
        const subscribed = await Promise.all(subscribing);
        await publishing;
        return { participantId: joined.participantId, videoStream: subscribed.find((s) => s.kind === "video")?.streamId };
      }, { token, group });
      assert.ok(videoStream, `run ${run}: subscribed to the publisher's video`);
      await waitUntil(() => page.evaluate((s) => window.lc.framesDecoded(s).then((n) => n > 10), videoStream), 20_000, `run ${run}: the literal client decoding the publisher's video`);
      await waitUntil(async () => (await decodingFrom(publisher)).includes(participantId), 20_000, `run ${run}: the publisher decoding the literal client's video`);
      const { log, errors } = await page.evaluate(() => ({ log: window.lc.log, errors: window.lc.errors }));
      console.log(`# run ${run}: ${log.join("; ")}`);
      assert.deepEqual(errors, [], `run ${run}: no offer failed to apply, no answer was refused`);
      await page.context().close();
    }
    // The runs did exercise glare: a server offer crossed a client offer and was withdrawn.
    assert.ok((await server.metric('switchboard_webrtc_offers_total{result="voided"}')) >= 1, "a server offer was withdrawn");
    assert.equal(await server.metric('switchboard_webrtc_offers_total{result="rejected"}'), 0, "no offer was rejected");
  } finally {
    await browser.close();
    await server.stop();
  }
});

test("a receive-only participant sees a new publisher after the last one left", async () => {
  const server = await startServer();
  const browser = await launchBrowser();
  try {
    const group = randomUUID();
    // The viewer publishes nothing: every media line of its peer connection is a server offer's.
    const viewer = await openDemo(browser, server.endpoint);
    await viewer.addScriptTag({ path: join(here, "literal_client.js") });
    const { token } = await server.devToken();
    await viewer.evaluate(async ({ token, group }) => {
      const c = new window.LiteralClient(`wss://${location.host}/signal`);
      window.lc = c;
      await c.connect();
      c.onTrackPublished = (t) => c.subscribe(t.trackId);
      await c.join(token, group);
    }, { token, group });
    const videoStreamOf = (page) => page.evaluate(() => {
      const t = [...window.demo.sb.published.values()].find((p) => p.kind === "video");
      return t && `t${t.trackId}`;
    });

    const first = await joinDemo(browser, server.endpoint, group);
    const firstStream = await waitUntil(() => videoStreamOf(first), 30_000, "the first publisher's video track");
    await waitUntil(() => viewer.evaluate((s) => window.lc.decodingStreams().then((d) => d.includes(s)), firstStream), 30_000, "the viewer decoding the first publisher");
    // The last publisher leaves: the server's next offer stops every media line the viewer has.
    const offersBefore = await viewer.evaluate(() => window.lc.log.length);
    await first.context().close();
    await waitUntil(() => viewer.evaluate((n) => window.lc.log.length > n && window.lc.pc.signalingState === "stable", offersBefore), 15_000, "the viewer handling the offer that stops the first publisher's lines");

    const second = await joinDemo(browser, server.endpoint, group);
    const secondStream = await waitUntil(() => videoStreamOf(second), 30_000, "the second publisher's video track");
    await waitUntil(() => viewer.evaluate((s) => window.lc.decodingStreams().then((d) => d.includes(s)), secondStream), 30_000, "the viewer decoding the second publisher");
    const { log, errors } = await viewer.evaluate(() => ({ log: window.lc.log, errors: window.lc.errors }));
    console.log(`# viewer: ${log.join("; ")}`);
    assert.deepEqual(errors, [], "every server offer applied");
  } finally {
    await browser.close();
    await server.stop();
  }
});

test("a layer wish made in the track handler holds from the first frame", async () => {
  const server = await startServer();
  const browser = await launchBrowser();
  try {
    const group = randomUUID();
    const publisher = await joinDemo(browser, server.endpoint, group);
    const publisherId = await publisher.evaluate(() => window.demo.sb.participantId);
    // Chrome sends its top layers once its estimate allows: wait until all three are sent.
    await waitUntil(() => publisher.evaluate(async () => {
      let rids = 0;
      for (const s of (await window.demo.sb.pc.getStats()).values()) if (s.type === "outbound-rtp" && s.kind === "video" && s.framesEncoded > 0) rids++;
      return rids === 3;
    }), 30_000, "the publisher sending three layers");

    const sub = await joinDemo(browser, server.endpoint, group, { subscribe: false });
    await sub.evaluate(async (publisherId) => {
      const sb = window.demo.sb;
      const video = [...sb.tracks.values()].find((t) => t.participantId === publisherId && t.kind === "video");
      // As README shows it: the wish is made when the track arrives, while the subscription's
      // media line is still being negotiated.
      sb.addEventListener("track", (e) => {
        if (e.detail.kind === "video") window.wish = sb.setPreferredLayer(e.detail.subscriptionId, 0);
      });
      const s = await sb.subscribe(video.trackId);
      window.widths = [];
      window.sampler = setInterval(async () => {
        const st = await sb.subscriptionStats(s.subscriptionId);
        if (st?.frameWidth) window.widths.push(st.frameWidth);
      }, 100);
    }, publisherId);
    await waitUntil(() => sub.evaluate(() => window.widths.length >= 40), 30_000, "4 s of decoded video");
    const acknowledged = await sub.evaluate(async () => (await window.wish)?.type);
    assert.equal(acknowledged, "ok", "the wish was acknowledged");
    const widths = await sub.evaluate(() => window.widths);
    assert.deepEqual([...new Set(widths)], [320], `only the low layer (320 wide) arrives: ${[...new Set(widths)]}`);
  } finally {
    await browser.close();
    await server.stop();
  }
});
