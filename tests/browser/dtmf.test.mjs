// DTMF from a browser: the page presses keys with the SDK's `call.sendDtmf` (Chrome's
// RTCDTMFSender, RFC 4733 telephone-events in its audio), and call automation's continuous
// recognition reports each tone in order. The server negotiates telephone-event/48000 with the
// browser and maps its payload type to the one call automation's leg (a QUIC client) reads.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { startServer, launchBrowser, joinDemo, waitUntil, callbackReceiver } from "./harness.mjs";

const API = "api-version=2024-09-15";

test("tones a browser sends with sendDtmf are recognized by call automation, in order", async () => {
  const server = await startServer();
  const app = await callbackReceiver();
  const browser = await launchBrowser();
  try {
    const group = randomUUID();
    const page = await joinDemo(browser, server.endpoint, group);
    const raw = await page.evaluate(() => window.demo.identity);
    const props = await server.acs("POST", `/calling/callConnections:connect?${API}`, {
      callLocator: { kind: "groupCallLocator", groupCallId: group },
      callbackUri: app.url,
    });
    const id = props.callConnectionId;
    const named = (name) => app.events.filter((e) => e.name === name && e.data.callConnectionId === id);
    await waitUntil(async () => named("CallConnected").length > 0, 15_000, "CallConnected");
    // The page's audio track must be published before the leg can listen to it.
    await waitUntil(async () => page.evaluate(() => Boolean(window.demo.call?._audioTrack?.trackId)), 15_000, "the page's audio track");
    await server.acs("POST", `/calling/callConnections/${id}:startContinuousDtmfRecognition?${API}`, {
      targetParticipant: { rawId: raw, communicationUser: { id: raw } },
      operationContext: "keypad",
    });

    const pressed = ["Num1", "Num5", "Pound", "Star", "Num0"];
    for (const tone of pressed) await page.evaluate((t) => window.demo.call.sendDtmf(t), tone);
    const want = ["one", "five", "pound", "asterisk", "zero"];
    await waitUntil(async () => named("ContinuousDtmfRecognitionToneReceived").length >= want.length, 10_000,
      `${want.length} tones recognized (got ${named("ContinuousDtmfRecognitionToneReceived").map((e) => e.data.tone)})`);
    const heard = named("ContinuousDtmfRecognitionToneReceived");
    console.log(`# recognized: ${heard.map((e) => e.data.tone).join(", ")}`);
    assert.deepEqual(heard.map((e) => e.data.tone), want, "every tone once, in the order pressed");
    assert.deepEqual(heard.map((e) => e.data.sequenceId), [1, 2, 3, 4, 5]);
    assert.ok(heard.every((e) => e.data.operationContext === "keypad"));
    await assert.rejects(page.evaluate(() => window.demo.call.sendDtmf("Flash")), /InvalidArgument/);
    await server.acs("DELETE", `/calling/callConnections/${id}?${API}`);
  } finally {
    await browser.close();
    app.close();
    await server.stop();
  }
});
