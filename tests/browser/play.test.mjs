// Call automation plays a WAV file into a group call and a browser decodes it: the server's
// Opus encoder, packetizer and pacing are checked by Chrome's own decoder, not only by the
// Rust-side decoder of tests/call_automation.rs. The app (this test) connects to the group call
// over the signed REST API and gets its events at a callback receiver on loopback.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer, launchBrowser, joinDemo, subscriptionStats, waitUntil, sleep, callbackReceiver } from "./harness.mjs";

const API = "api-version=2024-09-15";
const TONE_SECONDS = 4;

/** A 440 Hz tone at half scale, 16-bit mono PCM at 16 kHz (the server resamples to 48 kHz). */
function toneWav() {
  const rate = 16_000;
  const n = rate * TONE_SECONDS;
  const buf = Buffer.alloc(44 + n * 2);
  buf.write("RIFF", 0);
  buf.writeUInt32LE(36 + n * 2, 4);
  buf.write("WAVEfmt ", 8);
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20); // PCM
  buf.writeUInt16LE(1, 22); // mono
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write("data", 36);
  buf.writeUInt32LE(n * 2, 40);
  for (let i = 0; i < n; i++) buf.writeInt16LE(Math.round(16_384 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + i * 2);
  return buf;
}

test("a WAV file played into a group call is decoded by a browser as audio with the file's energy", async () => {
  const media = mkdtempSync(join(tmpdir(), "sb-media-"));
  writeFileSync(join(media, "tone.wav"), toneWav());
  const server = await startServer({ env: { SWITCHBOARD__CALL_AUTOMATION__MEDIA_DIR: media } });
  const app = await callbackReceiver();
  const browser = await launchBrowser();
  try {
    const group = randomUUID();
    const page = await joinDemo(browser, server.endpoint, group);
    const props = await server.acs("POST", `/calling/callConnections:connect?${API}`, {
      callLocator: { kind: "groupCallLocator", groupCallId: group },
      callbackUri: app.url,
    });
    const id = props.callConnectionId;
    const seen = (name) => app.events.some((e) => e.name === name && e.data.callConnectionId === id);
    await waitUntil(async () => seen("CallConnected"), 15_000, "CallConnected");
    const play = (context) =>
      server.acs("POST", `/calling/callConnections/${id}:play?${API}`, {
        playSources: [{ kind: "file", file: { uri: "tone.wav" } }],
        operationContext: context,
      });
    const done = (context) => app.events.some((e) => e.name === "PlayCompleted" && e.data.operationContext === context);
    // The leg publishes its audio track with its first play; the page subscribes to it then
    // (a renegotiation), which may cost the first prompt its start. Warm up with one play, so
    // the measured one is whole.
    await play("warm-up");
    await waitUntil(async () => (await subscriptionStats(page, "audio")).length === 1, 15_000, "the leg's audio track");
    await waitUntil(async () => done("warm-up"), (TONE_SECONDS + 10) * 1000, "the warm-up play to complete");
    const audio = async () => (await subscriptionStats(page, "audio"))[0];
    const energy = () =>
      page.evaluate(async () => {
        const sub = [...window.demo.sb.subscriptions.values()].find((s) => s.kind === "audio" && s.receiver);
        for (const s of (await sub.receiver.getStats()).values()) {
          if (s.type === "inbound-rtp") {
            return { energy: s.totalAudioEnergy ?? 0, duration: s.totalSamplesDuration ?? 0, concealed: (s.concealedSamples ?? 0) - (s.silentConcealedSamples ?? 0), samples: s.totalSamplesReceived ?? 0 };
          }
        }
        return null;
      });

    const before = await energy();
    console.log(`# the first play reached the page with energy ${before.energy.toFixed(3)} (the whole tone: ~${(0.25 * TONE_SECONDS).toFixed(2)})`);
    await play("tone");
    await waitUntil(async () => seen("PlayStarted") && app.events.filter((e) => e.name === "PlayStarted").length === 2, 10_000, "PlayStarted");
    let peak = 0;
    await waitUntil(async () => {
      peak = Math.max(peak, (await audio()).audioLevel);
      return done("tone");
    }, (TONE_SECONDS + 10) * 1000, "PlayCompleted");
    await sleep(500);
    const after = await energy();

    // totalAudioEnergy sums level^2 x duration, and Chrome's level is the peak of each 10 ms
    // block: a sine at half scale gives 0.25 per second of tone. Silence or undecodable packets
    // give ~0, a wrong gain or sample rate far more or less. Concealment counted is what loss
    // or late packets cost, and the fade-out NetEq extrapolates when a play ends (~100-250 ms);
    // the silent concealment between plays is left out.
    const gained = after.energy - before.energy;
    const expected = 0.25 * TONE_SECONDS;
    const concealed = (after.concealed - before.concealed) / Math.max(1, after.samples - before.samples);
    console.log(`# tone: energy +${gained.toFixed(3)} (expected ${expected}) over ${(after.duration - before.duration).toFixed(1)} s, peak level ${peak.toFixed(2)}, ${(concealed * 100).toFixed(1)}% concealed`);
    assert.ok(gained > expected * 0.6 && gained < expected * 1.4, `the decoded audio carries the tone's energy (+${gained.toFixed(3)}, expected ${expected})`);
    assert.ok(peak > 0.35 && peak < 0.7, `the audio level during the play (${peak}) is the tone's (0.5)`);
    assert.ok(concealed < 0.1, `few concealed samples in the tone (${(concealed * 100).toFixed(1)}%)`);
    await server.acs("DELETE", `/calling/callConnections/${id}?${API}`);
  } finally {
    await browser.close();
    app.close();
    await server.stop();
    rmSync(media, { recursive: true, force: true });
  }
});
