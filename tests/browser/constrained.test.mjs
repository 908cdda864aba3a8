// A subscriber on a constrained downlink: the browser runs in its own network namespace behind a
// veth pair, and a tbf qdisc caps what the server can send to it. The SFU's bandwidth estimate
// (TWCC) must move it to a lower layer within 5 s, and back to the top layer within 15 s of
// lifting the cap.
//
// Needs root and a private network + mount namespace (scripts/test runs it under
// `unshare -n -m`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { execFileSync } from "node:child_process";
import { writeFileSync, chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer, launchBrowser, joinDemo, subscriptionStats, encodedFrames, waitUntil, sleep } from "./harness.mjs";

const sh = (cmd) => execFileSync("sh", ["-c", cmd], { stdio: "inherit" });
const NS = `sbbrowser${process.pid}`;
const SERVER_IP = "10.77.0.1";
// Between the low layer (~150 kbit/s) and the top one (~700 kbit/s) of Chromium's fake camera,
// with a 200 ms bottleneck buffer.
const CAP = "rate 400kbit burst 32kbit latency 200ms";

function setUpNetwork() {
  sh(`ip netns add ${NS}`);
  sh(`ip link add sbv0 type veth peer name sbv1`);
  sh(`ip link set sbv1 netns ${NS}`);
  sh(`ip addr add ${SERVER_IP}/24 dev sbv0 && ip link set sbv0 up`);
  sh(`ip netns exec ${NS} sh -c 'ip link set lo up && ip addr add 10.77.0.2/24 dev sbv1 && ip link set sbv1 up'`);
  const dir = mkdtempSync(join(tmpdir(), "sb-ns-"));
  const wrapper = join(dir, "chromium-in-ns");
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${NS} /usr/bin/chromium "$@"\n`);
  // Let the new links settle before a browser watches them.
  execFileSync("sleep", ["1"]);
  chmodSync(wrapper, 0o755);
  return { wrapper, dir };
}

function tearDownNetwork(dir) {
  if (dir) rmSync(dir, { recursive: true, force: true });
  try {
    sh(`ip netns del ${NS}`);
  } catch {
    // already gone
  }
}

test("a constrained subscriber moves down within 5 s and back up within 15 s", async () => {
  const { wrapper, dir } = setUpNetwork();
  const server = await startServer({ listenIp: SERVER_IP, env: { SWITCHBOARD__HTTP__TLS_NAMES: `["${SERVER_IP}"]` } });
  // The publisher sits next to the server; only the subscriber is behind the constrained link.
  const publisherBrowser = await launchBrowser();
  const browser = await launchBrowser({ executablePath: wrapper });
  try {
    const group = randomUUID();
    const publisher = await joinDemo(publisherBrowser, server.endpoint, group, { subscribe: false });
    const sub = await joinDemo(browser, server.endpoint, group);
    const width = async () => (await subscriptionStats(sub, "video"))[0]?.frameWidth ?? 0;
    // The top layer, steadily, before the cap.
    let steadySince = Date.now();
    await waitUntil(async () => {
      if ((await width()) !== 1280) steadySince = Date.now();
      return Date.now() - steadySince >= 3000;
    }, 45_000, "3 s on the top layer before the cap");

    sh(`tc qdisc add dev sbv0 root tbf ${CAP}`);
    const capped = Date.now();
    await waitUntil(async () => (await width()) > 0 && (await width()) < 1280, 5_000, "a lower layer under the cap");
    const down = Date.now() - capped;
    // Still decoding while capped, and not back on the top layer. The publisher's encoder sets
    // the frame rate (Chrome lowers it when the machine is busy), so the subscriber is held to
    // what was encoded on the layer it receives: a freeze or a run of lost frames shows as a
    // shortfall, a slow encoder does not. The estimate may still move between the lower layers
    // (both fit under the cap); a half second with a switch in it (the layer announced or the
    // decoded width changed) is left out of the count, but most of them must be steady. The
    // bound is 60%: a 400 kbit/s bottleneck loses some frames (CI saw 78-113%), while a freeze
    // of 1.6 s or more in the 4 s falls below it.
    let prev = { sub: (await subscriptionStats(sub, "video"))[0], enc: await encodedFrames(publisher) };
    let encoded = 0;
    let decoded = 0;
    let steady = 0;
    for (let i = 0; i < 8; i++) {
      await sleep(500);
      const now = { sub: (await subscriptionStats(sub, "video"))[0], enc: await encodedFrames(publisher) };
      assert.ok(now.sub.frameWidth < 1280 && now.sub.layer < 2, "stays below the top layer while capped");
      if (now.sub.layer === prev.sub.layer && now.sub.frameWidth === prev.sub.frameWidth) {
        steady += 1;
        encoded += now.enc[now.sub.layer] - prev.enc[now.sub.layer];
        decoded += now.sub.framesDecoded - prev.sub.framesDecoded;
      }
      prev = now;
    }
    console.log(`# under the cap, ${steady} steady half seconds: ${encoded} frames encoded on the layer received, ${decoded} decoded`);
    assert.ok(steady >= 4, `the layer holds still under the cap (${steady} of 8 half seconds without a switch)`);
    assert.ok(encoded >= 8, `the publisher keeps encoding the lower layers (${encoded} frames counted)`);
    assert.ok(decoded >= encoded * 0.6, `frames keep being decoded under the cap (${decoded} of ${encoded} encoded)`);

    sh(`tc qdisc del dev sbv0 root`);
    const lifted = Date.now();
    await waitUntil(async () => (await width()) === 1280, 15_000, "the top layer after lifting the cap");
    const up = Date.now() - lifted;
    console.log(`# moved down after ${down} ms, back up after ${up} ms`);
    const [v] = await subscriptionStats(sub, "video");
    assert.ok(v.framesDecoded > 0);
  } finally {
    await browser.close();
    await publisherBrowser.close();
    await server.stop();
    tearDownNetwork(dir);
  }
});
