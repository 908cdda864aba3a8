// A browser's WebSocket that sends a signaling message over limits.max_message_bytes is told so
// (`error` MessageTooLarge with the message's id) and then closed with status 1009, as
// docs/PROTOCOL.md says — not dropped without a close frame (1006).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, openDemo } from "./harness.mjs";

test("an oversized signaling message is answered MessageTooLarge, then closed with 1009", async () => {
  const server = await startServer({ env: { SWITCHBOARD__LIMITS__MAX_MESSAGE_BYTES: "4096" } });
  const browser = await launchBrowser();
  try {
    const page = await openDemo(browser, server.endpoint);
    const seen = await page.evaluate(async () => {
      const ws = new WebSocket(`wss://${location.host}/signal`);
      const messages = [];
      ws.onmessage = (e) => messages.push(JSON.parse(e.data));
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = reject;
      });
      const closed = new Promise((resolve) => (ws.onclose = (e) => resolve({ code: e.code, reason: e.reason, clean: e.wasClean })));
      ws.send(JSON.stringify({ type: "ping", id: 41, pad: "x".repeat(6000) }));
      const close = await Promise.race([closed, new Promise((r) => setTimeout(() => r(null), 5000))]);
      return { messages, close };
    });
    assert.ok(seen.close, "the socket is closed within 5 s");
    assert.equal(seen.close.code, 1009, `close status: ${JSON.stringify(seen.close)}`);
    assert.ok(seen.close.clean, "with a close frame");
    const error = seen.messages.find((m) => m.type === "error");
    assert.ok(error, `an error arrives before the close: ${JSON.stringify(seen.messages)}`);
    assert.equal(error.code, "MessageTooLarge");
    assert.equal(error.id, 41, "it answers the oversized request's id");
  } finally {
    await browser.close();
    await server.stop();
  }
});
