// Two browser pages join a group call through the demo page; each publishes its fake camera
// (three simulcast layers) and microphone, and decodes the other's video and receives its audio.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { startServer, launchBrowser, joinDemo, subscriptionStats, waitUntil, sleep } from "./harness.mjs";

test("two pages see and hear each other", async () => {
  const server = await startServer();
  const browser = await launchBrowser();
  try {
    const group = randomUUID();
    const a = await joinDemo(browser, server.endpoint, group);
    const b = await joinDemo(browser, server.endpoint, group);
    for (const [name, page] of [["A", a], ["B", b]]) {
      const video = await waitUntil(async () => {
        const v = await subscriptionStats(page, "video");
        return v.length === 1 && v[0].framesDecoded > 10 && v[0].frameWidth > 0 ? v[0] : null;
      }, 30_000, `page ${name} decoding video`);
      const before = video.framesDecoded;
      await sleep(2000);
      const [after] = await subscriptionStats(page, "video");
      assert.ok(after.framesDecoded > before + 20, `page ${name}: frames keep being decoded (${before} -> ${after.framesDecoded})`);
      assert.ok(after.frameWidth > 0);
      const [audio] = await subscriptionStats(page, "audio");
      assert.ok(audio, `page ${name} has an audio subscription`);
      assert.ok(audio.packetsReceived > 50, `page ${name} receives audio packets (${audio.packetsReceived})`);
      assert.ok(audio.totalSamplesReceived > 0, `page ${name} decodes audio`);
      // Chrome brings layers up as its estimate and CPU allow (on a loaded machine one can lag the
      // others by seconds): wait for all three to have sent, then check them.
      const outbound = () => page.evaluate(async () => {
        const report = await window.demo.sb.pc.getStats();
        const out = { rids: [], ciphers: [] };
        for (const s of report.values()) {
          if (s.type === "outbound-rtp" && s.kind === "video" && s.packetsSent > 0) out.rids.push(s.rid);
          if (s.type === "transport" && s.srtpCipher) out.ciphers.push(s.srtpCipher);
        }
        out.rids.sort();
        return out;
      });
      let sending = await outbound();
      try {
        sending = await waitUntil(async () => {
          const o = await outbound();
          return o.rids.length === 3 ? o : null;
        }, 15_000, `page ${name} sending three layers`);
      } catch {
        sending = await outbound();
      }
      assert.deepEqual(sending.rids, ["f", "h", "q"], `page ${name} sends three simulcast layers`);
      assert.ok(sending.ciphers.length > 0 && sending.ciphers.every((c) => c.includes("GCM")), `page ${name}: DTLS-SRTP uses AES-GCM (${sending.ciphers})`);
    }
  } finally {
    await browser.close();
    await server.stop();
  }
});
