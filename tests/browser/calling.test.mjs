// The demo page and /calling.js as people use them: Ada calls Bob by identity ID; Bob has two
// devices (two tokens of one identity) and both ring; one answers, the other says it was answered
// elsewhere; they see and hear each other; camera-off and mute show on the other side; Ada hangs
// up and Bob's page says so; a declined call; and a second call between the same pages. Then three people in a group call (the grid), and a call agent that
// renews its registration with refreshed tokens.
//
// Screenshots of each screen at desktop (1366x768) and phone (390x844) size go to
// $SB_ARTIFACTS (default tests/browser/artifacts/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { startServer, launchBrowser, openDemo, signIn, subscriptionStats, waitUntil, sleep } from "./harness.mjs";

const ARTIFACTS = process.env.SB_ARTIFACTS ?? join(dirname(fileURLToPath(import.meta.url)), "artifacts");
const DESKTOP = { viewport: { width: 1366, height: 768 } };
// Pixel ratio 2: the SDK caps the ratio at 2, so a ratio-3 phone asks for the same layers, and
// headless Chromium composites in software (ratio 3 costs 2.25 times the pixels on 2 cores).
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

async function shot(page, name, options = {}) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), ...options });
}

/**
 * The page's remote video: decoding, with 10 more frames decoded within `ms` (a frozen stream
 * fails; a machine so busy that Chrome decodes at 2 fps does not).
 */
async function decoding(page, who, ms = 5000) {
  const first = await waitUntil(async () => {
    const [v] = await subscriptionStats(page, "video");
    return v && v.framesDecoded > 10 && v.frameWidth > 0 ? v : null;
  }, 30_000, `${who} decoding video`);
  let last = first;
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && last.framesDecoded <= first.framesDecoded + 10) {
    await sleep(250);
    [last] = await subscriptionStats(page, "video");
  }
  assert.ok(last.framesDecoded > first.framesDecoded + 10, `${who}: frames keep being decoded (${first.framesDecoded} -> ${last.framesDecoded} in ${ms} ms)`);
  assert.ok(last.frameWidth > 0, `${who}: frameWidth ${last.frameWidth}`);
  return last;
}

/**
 * The height of the highest simulcast layer the page's camera is encoding now: Chrome drops its
 * top layer when the machine is busy (qualityLimitationReason "cpu"), and a subscriber can only
 * get what is sent.
 */
function topEncodedHeight(page) {
  return page.evaluate(async () => {
    let top = 0;
    for (const s of (await window.demo.sb.pc.getStats()).values()) {
      if (s.type === "outbound-rtp" && s.kind === "video" && (s.framesPerSecond ?? 0) > 0) top = Math.max(top, s.frameHeight ?? 0);
    }
    return top;
  });
}

const remoteTileClass = (page) => page.evaluate(() => document.querySelector("figure.tile.remote")?.className ?? "");

test("Ada calls Bob: both of Bob's devices ring, the first answers, the other is told", async () => {
  const server = await startServer();
  let browser;
  try {
    browser = await launchBrowser();
    // Bob: one identity, two devices with a token each.
    const bob = await server.devToken();
    const bobSecondToken = server.issueToken(bob.identity);

    const ada = await openDemo(browser, server.endpoint, "#name=Ada%20Lovelace", DESKTOP);
    const bobPhone = await openDemo(browser, server.endpoint, "#name=Bob", PHONE);
    const bobLaptop = await openDemo(browser, server.endpoint, "#name=Bob", DESKTOP);
    await ada.waitForSelector("#preview video");
    await bobPhone.waitForSelector("#preview video");
    await shot(ada, "desktop-1-prejoin");
    await shot(bobPhone, "phone-0-prejoin", { fullPage: true });
    const adaId = await signIn(ada);
    assert.match(adaId, /^8:acs:/);
    assert.equal(await ada.textContent("#my-id"), adaId, "the page shows its own identity to share");
    await shot(ada, "desktop-2-signed-in");
    assert.equal(await signIn(bobPhone, bob.token), bob.identity);
    assert.equal(await signIn(bobLaptop, bobSecondToken), bob.identity);
    await shot(bobPhone, "phone-1-signed-in", { fullPage: true });

    // Ada calls Bob by ID; both of Bob's devices show the incoming call.
    await ada.click("#tab-direct");
    await ada.fill("#callee", bob.identity);
    await ada.click("#start-call");
    for (const [name, page] of [["phone", bobPhone], ["laptop", bobLaptop]]) {
      await page.waitForSelector("#incoming[open]", { timeout: 15_000 });
      assert.equal(await page.textContent("#caller-name"), "Ada Lovelace", `Bob's ${name} shows who calls`);
      assert.equal(await page.textContent("#caller-id"), adaId);
    }
    await ada.waitForFunction(() => window.demo.callState === "Ringing", null, { timeout: 10_000 });
    assert.match(await ada.textContent("#call-state"), /Ringing/);
    await shot(ada, "desktop-3-ringing");
    await shot(bobPhone, "phone-2-incoming");
    await shot(bobLaptop, "desktop-4-incoming");

    // Bob answers on his phone; the laptop stops ringing and says why.
    await bobPhone.click("#accept");
    await bobLaptop.waitForFunction(() => !document.getElementById("incoming").open && window.demo.lastIncomingEnd === "AnsweredElsewhere", null, { timeout: 10_000 });
    await bobLaptop.waitForSelector(".toast:has-text('Answered on another device')");
    assert.equal(await bobLaptop.evaluate(() => window.demo.screen), "lobby", "the laptop stays on its start screen");
    await shot(bobLaptop, "desktop-5-answered-elsewhere");

    // They see each other (video decoded both ways) and hear each other.
    await ada.waitForFunction(() => window.demo.callState === "Connected", null, { timeout: 10_000 });
    await bobPhone.waitForFunction(() => window.demo.joined === true, null, { timeout: 20_000 });
    await decoding(ada, "Ada");
    await decoding(bobPhone, "Bob's phone");
    for (const [who, page] of [["Ada", ada], ["Bob", bobPhone]]) {
      const audio = await waitUntil(async () => {
        const [a] = await subscriptionStats(page, "audio");
        return a && a.packetsReceived > 50 && a.totalSamplesReceived > 0 ? a : null;
      }, 15_000, `${who} receiving audio`);
      assert.ok(audio);
    }
    // The layer follows the tile: Bob's phone tile is small, Ada's laptop tile is large.
    const phoneVideo = await waitUntil(async () => {
      const [v] = await subscriptionStats(bobPhone, "video");
      return v && v.frameHeight > 0 && v.frameHeight <= 360 ? v : null;
    }, 15_000, "a low layer on the phone's tile");
    let top = 0;
    const seen = [];
    const adaVideo = await waitUntil(async () => {
      const [v] = await subscriptionStats(ada, "video");
      top = await topEncodedHeight(bobPhone);
      seen.push(`${v?.frameHeight}/${top}`);
      return v && top > 360 && v.frameHeight === top ? v : null;
    }, 30_000, "the top layer Bob's phone sends (above 360) on the laptop's large tile").catch((e) => {
      throw new Error(`${e.message}; received/top sent: ${seen.slice(-12).join(" ")}`);
    });
    if (top !== 720) console.log(`# Bob's phone encodes up to ${top}p on this busy machine; Ada gets that`);
    await sleep(2000);
    const [phoneAfter] = await subscriptionStats(bobPhone, "video");
    assert.ok(phoneAfter.frameHeight <= 360, `the phone stays on a low layer (${phoneAfter.frameWidth}x${phoneAfter.frameHeight})`);
    console.log(`# phone tile receives ${phoneVideo.frameWidth}x${phoneVideo.frameHeight}; laptop tile ${adaVideo.frameWidth}x${adaVideo.frameHeight}`);
    assert.equal(await ada.textContent("figure.tile.remote .name"), "Bob");
    await shot(ada, "desktop-6-in-call");
    await shot(bobPhone, "phone-3-in-call");

    // Ada stops her camera: Bob sees "camera off" (avatar, badge), not a frozen frame.
    await ada.click("#cam");
    await ada.waitForFunction(() => document.getElementById("cam").getAttribute("aria-pressed") === "false");
    await bobPhone.waitForFunction(() => document.querySelector("figure.tile.remote")?.classList.contains("video-off"), null, { timeout: 10_000 });
    assert.notEqual(await bobPhone.evaluate(() => getComputedStyle(document.querySelector("figure.tile.remote .badge.cam")).display), "none", "the camera-off badge shows");
    const [frozen] = await subscriptionStats(bobPhone, "video");
    await sleep(1500);
    const [stillFrozen] = await subscriptionStats(bobPhone, "video");
    assert.ok(stillFrozen.framesDecoded - frozen.framesDecoded <= 2, "no frames arrive while the camera is off");
    // ... and she mutes: Bob sees the muted badge.
    await ada.click("#mic");
    await bobPhone.waitForFunction(() => document.querySelector("figure.tile.remote")?.classList.contains("muted"), null, { timeout: 10_000 });
    assert.equal(await ada.getAttribute("#mic", "aria-pressed"), "false", "Ada's mic button shows it is off");
    await shot(bobPhone, "phone-4-camera-off-and-muted");
    await shot(ada, "desktop-7-own-camera-off-and-muted");
    // Camera back on: video again on Bob's phone.
    await ada.click("#cam");
    await bobPhone.waitForFunction(() => !document.querySelector("figure.tile.remote")?.classList.contains("video-off"), null, { timeout: 10_000 });
    const back = Date.now();
    await waitUntil(async () => {
      const [v] = await subscriptionStats(bobPhone, "video");
      return v.framesDecoded > stillFrozen.framesDecoded + 30;
    }, 10_000, "video again on Bob's phone after the camera came back");
    console.log(`# 30 frames decoded ${Date.now() - back} ms after the camera came back`);
    await ada.click("#mic");
    await bobPhone.waitForFunction(() => !document.querySelector("figure.tile.remote")?.classList.contains("muted"), null, { timeout: 10_000 });

    // Ada hangs up; Bob's phone shows that the call ended, and why.
    await ada.click("#leave");
    await ada.waitForFunction(() => window.demo.screen === "ended", null, { timeout: 10_000 });
    await bobPhone.waitForFunction(() => window.demo.screen === "ended", null, { timeout: 10_000 });
    assert.equal(await bobPhone.evaluate(() => window.demo.endReason), "HungUp");
    assert.match(await bobPhone.textContent("#ended-detail"), /Ada Lovelace hung up/);
    assert.match(await ada.textContent("#ended-detail"), /You left the call/);
    await shot(ada, "desktop-8-call-ended");
    await shot(bobPhone, "phone-5-call-ended");

    // Both devices are still registered: Bob's laptop calls Ada back, Ada declines.
    await bobLaptop.click("#tab-direct");
    await bobLaptop.fill("#callee", adaId);
    await bobLaptop.click("#start-call");
    await ada.waitForSelector("#incoming[open]", { timeout: 15_000 });
    await ada.click("#decline");
    await bobLaptop.waitForFunction(() => window.demo.screen === "ended", null, { timeout: 10_000 });
    assert.equal(await bobLaptop.evaluate(() => window.demo.endReason), "Declined");
    assert.match(await bobLaptop.textContent("#ended-detail"), /declined/);
    await shot(bobLaptop, "desktop-9-declined");

    // A second call between the same two pages: both had a call before, media flows again.
    await ada.click("#back");
    await bobPhone.click("#back");
    await ada.click("#tab-direct");
    await ada.fill("#callee", bob.identity);
    await ada.click("#start-call");
    await bobPhone.waitForSelector("#incoming[open]", { timeout: 15_000 });
    await bobPhone.click("#accept");
    await bobLaptop.waitForFunction(() => window.demo.lastIncomingEnd === "AnsweredElsewhere" && !document.getElementById("incoming").open, null, { timeout: 10_000 });
    await decoding(ada, "Ada in the second call");
    await decoding(bobPhone, "Bob's phone in the second call");
    await bobPhone.click("#leave");
    await ada.waitForFunction(() => window.demo.screen === "ended", null, { timeout: 10_000 });
    assert.match(await ada.textContent("#ended-detail"), /Bob hung up/);
  } finally {
    await browser?.close();
    await server.stop();
  }
});

test("three people in a group call: a grid; small phone tiles get a low layer", async () => {
  // Cleo joins with her camera off (two encoders, not three, on a 2-core machine; and the grid
  // shows a camera-off tile).
  const server = await startServer();
  let browser;
  try {
    browser = await launchBrowser();
    const group = randomUUID();
    const pages = [];
    for (const [name, options, extra] of [["Ada", DESKTOP, ""], ["Bob", PHONE, ""], ["Cleo", DESKTOP, "&camera=off"]]) {
      const page = await openDemo(browser, server.endpoint, `#group=${group}&name=${name}${extra}`, options);
      await signIn(page);
      await page.click("#join-group");
      await page.waitForFunction(() => window.demo.joined === true, null, { timeout: 30_000 });
      pages.push(page);
    }
    const [ada, bob, cleo] = pages;
    for (const [who, page, cameras] of [["Ada", ada, 1], ["Bob", bob, 1], ["Cleo", cleo, 2]]) {
      const videos = await waitUntil(async () => {
        const v = await subscriptionStats(page, "video");
        return v.length === cameras && v.every((s) => s.framesDecoded > 10 && s.frameWidth > 0) ? v : null;
      }, 30_000, `${who} decoding the cameras that are on`);
      assert.equal(videos.length, cameras);
      assert.equal(await page.evaluate(() => document.getElementById("stage").dataset.layout), "grid");
      assert.equal(await page.evaluate(() => document.querySelectorAll("figure.tile.remote.video-off").length), who === "Cleo" ? 0 : 1, `${who} sees Cleo's camera off`);
    }
    const small = await waitUntil(async () => {
      const [v] = await subscriptionStats(bob, "video");
      return v && v.frameHeight > 0 && v.frameHeight <= 360 ? v : null;
    }, 15_000, "a low layer on the phone's small tile");
    console.log(`# phone grid tile receives ${small.frameWidth}x${small.frameHeight}`);
    await sleep(1000);
    await shot(ada, "desktop-10-group-grid");
    await shot(bob, "phone-6-group-grid");
    // The participant list and the diagnostics overlay.
    await bob.click("#people-button");
    await bob.waitForSelector("#people-list li >> nth=2");
    assert.equal(await bob.locator("#people-list li").count(), 3);
    await shot(bob, "phone-7-people");
    await ada.click("#toggle-diagnostics");
    await ada.waitForFunction(() => [...document.querySelectorAll(".diag .info")].some((e) => /layer \w+ · \d+×\d+/.test(e.textContent)), null, { timeout: 5000 });
    await shot(ada, "desktop-11-diagnostics");
    // Cleo leaves: the others' grids lose her tile.
    await cleo.click("#leave");
    await ada.waitForFunction(() => document.querySelectorAll("figure.tile.remote").length === 1, null, { timeout: 10_000 });
    assert.equal(await ada.evaluate(() => document.getElementById("stage").dataset.layout), "pair");
  } finally {
    await browser?.close();
    await server.stop();
  }
});

test("an ACS Room: listed roles, an outsider refused, a presenter mutes and removes, a downgrade stops the camera", async () => {
  const server = await startServer();
  let browser;
  try {
    browser = await launchBrowser();
    const grace = await server.devToken();
    const alan = await server.devToken();
    const room = await server.acs("POST", "/rooms?api-version=2024-04-15", {
      participants: { [grace.identity]: { role: "Presenter" }, [alan.identity]: { role: "Attendee" } },
    });
    const join = async (name, token, options) => {
      const page = await openDemo(browser, server.endpoint, `#room=${room.id}&name=${name}`, options);
      await signIn(page, token);
      await page.click("#join-room");
      return page;
    };
    const g = await join("Grace", grace.token, DESKTOP);
    await g.waitForFunction(() => window.demo.joined === true, null, { timeout: 30_000 });
    const a = await join("Alan", alan.token, PHONE);
    await a.waitForFunction(() => window.demo.joined === true, null, { timeout: 30_000 });
    assert.equal(await g.evaluate(() => window.demo.call.role), "Presenter");
    assert.equal(await a.evaluate(() => window.demo.call.role), "Attendee");
    await decoding(g, "Grace");
    await decoding(a, "Alan");

    // Someone the room does not list is refused, and the page says why in red.
    const eve = await openDemo(browser, server.endpoint, `#room=${room.id}&name=Eve`, PHONE);
    await signIn(eve);
    await eve.click("#join-room");
    await eve.waitForFunction(() => window.demo.screen === "ended", null, { timeout: 10_000 });
    assert.equal(await eve.evaluate(() => window.demo.endReason), "NotAParticipant");
    assert.equal(await eve.getAttribute("#ended .ended-card", "role"), "alert");
    assert.match(await eve.textContent("#ended-detail"), /not a participant/);
    await shot(eve, "phone-8-room-refused");

    // Grace mutes Alan from the people panel; Alan is told and his mic shows off.
    await g.click("#people-button");
    await g.click("#people-list button[data-action=mute]");
    await a.waitForFunction(() => document.getElementById("mic").getAttribute("aria-pressed") === "false", null, { timeout: 10_000 });
    await a.waitForSelector(".toast:has-text('A presenter muted you')");
    await g.waitForFunction(() => document.querySelector("figure.tile.remote")?.classList.contains("muted"), null, { timeout: 10_000 });
    await shot(g, "desktop-12-room-presenter");
    await shot(a, "phone-9-muted-by-presenter");

    // The Rooms API makes Alan a Consumer: his camera stops at once and his page says so.
    await server.acs("PATCH", `/rooms/${room.id}/participants?api-version=2024-04-15`, { participants: { [alan.identity]: { role: "Consumer" } } });
    await a.waitForFunction(() => window.demo.call?.role === "Consumer", null, { timeout: 10_000 });
    await a.waitForFunction(() => document.getElementById("cam").disabled && document.getElementById("cam").getAttribute("aria-pressed") === "false", null, { timeout: 10_000 });
    await a.waitForSelector(".toast:has-text('Your role is now Consumer')");
    await g.waitForFunction(() => document.querySelector("figure.tile.remote")?.classList.contains("video-off"), null, { timeout: 10_000 });
    await decoding(a, "Alan as a Consumer");
    await shot(a, "phone-10-consumer");

    // Grace removes Alan.
    await g.click("#people-list button[data-action=remove]");
    await a.waitForFunction(() => window.demo.screen === "ended", null, { timeout: 10_000 });
    assert.equal(await a.evaluate(() => window.demo.endReason), "RemovedFromCall");
    await g.waitForFunction(() => document.querySelectorAll("figure.tile.remote").length === 0, null, { timeout: 10_000 });
  } finally {
    await browser?.close();
    await server.stop();
  }
});

test("a call agent renews its registration with a refreshed token before expiry", async () => {
  const server = await startServer();
  let browser;
  try {
    browser = await launchBrowser();
    const { identity, token } = await server.devToken();
    const page = await openDemo(browser, server.endpoint);
    let issued = 0;
    await page.exposeFunction("issueToken", () => {
      issued++;
      return server.issueToken(identity);
    });
    const first = await page.evaluate(async (token) => {
      const { CallClient, AzureCommunicationTokenCredential } = await import("/calling.js");
      const credential = new AzureCommunicationTokenCredential({ token, tokenRefresher: () => window.issueToken() });
      // Renew 3 s after registering (the tokens live a day).
      const agent = await new CallClient().createCallAgent(credential, { displayName: "Renewer", switchboard: { renewBeforeExpiryMs: 24 * 3600_000 - 3000 } });
      window.renewer = agent;
      return { identity: agent.identifier.communicationUserId, expiresOn: agent.registrationExpiresOn };
    }, token);
    assert.equal(first.identity, identity);
    const renewed = await waitUntil(() => page.evaluate(() => (window.renewer._registrations >= 3 ? { n: window.renewer._registrations, expiresOn: window.renewer.registrationExpiresOn, state: window.renewer.connectionState } : null)), 20_000, "two renewals");
    assert.ok(issued >= 2, `the refresher was asked for tokens (${issued})`);
    assert.ok(renewed.expiresOn > first.expiresOn, "the registration now expires later");
    assert.equal(renewed.state, "Connected");
  } finally {
    await browser?.close();
    await server.stop();
  }
});
