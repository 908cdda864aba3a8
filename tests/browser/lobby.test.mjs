// A meeting with a lobby, through the call page and /calling.js as people use them. Olga (a member
// of contoso.com, the meeting's organizer) opens the meeting's join link and is in at once. Eve
// (a dev token: external) types the meeting ID with a wrong passcode and is told so on the form,
// then with the right one, and waits: for over five seconds her page receives nothing at all
// while Olga sends her camera. Olga sees Eve in the lobby panel and admits her; they see each
// other. Rex (by link) and Ria wait together: Olga rejects Rex, whose page says so, and admits
// Ria with "Admit all". A second server shows the wait timing out, and leaving the lobby.
//
// Screenshots at desktop (1366x768) and phone (390x844) size go to $SB_ARTIFACTS (default
// tests/browser/artifacts/), named lobby-*.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { startServer, launchBrowser, openDemo, signIn, subscriptionStats, waitUntil, sleep } from "./harness.mjs";

const ARTIFACTS = process.env.SB_ARTIFACTS ?? join(dirname(fileURLToPath(import.meta.url)), "artifacts");
const DESKTOP_SIZE = { width: 1366, height: 768 };
const PHONE_SIZE = { width: 390, height: 844 };
const DESKTOP = { viewport: DESKTOP_SIZE };
const PHONE = { viewport: PHONE_SIZE, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

async function shot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `lobby-${name}.png`) });
  // Nothing sticks out sideways (a page wider than the phone is cut off or scrolls).
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth }));
  assert.ok(scrollWidth <= innerWidth, `${name}: the page is ${scrollWidth} px wide in a ${innerWidth} px window`);
}

/**
 * The same screen at the other size too: the page is resized for the picture and back (one page
 * per person keeps the 2-core machine free for the video). `reveal` is scrolled into view first.
 */
async function shotBoth(page, name, reveal) {
  const size = page.viewportSize();
  const [here, other] = size.width > 700 ? ["desktop", "phone"] : ["phone", "desktop"];
  const show = () => reveal && page.evaluate((sel) => document.querySelector(sel).scrollIntoView({ block: "center" }), reveal);
  await show();
  await shot(page, `${here}-${name}`);
  await page.setViewportSize(here === "desktop" ? PHONE_SIZE : DESKTOP_SIZE);
  await sleep(400); // layout, and the video views' resize
  await show();
  await shot(page, `${other}-${name}`);
  await page.setViewportSize(size);
  await sleep(200);
}

/** Records every RTCPeerConnection the page makes, to prove a waiting page receives nothing. */
function recordPeerConnections() {
  const Native = window.RTCPeerConnection;
  window.peerConnections = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      window.peerConnections.push(this);
    }
  };
}

/** What every peer connection of the page received: inbound RTP packets and decoded frames. */
function inbound(page) {
  return page.evaluate(async () => {
    const out = { peerConnections: window.peerConnections.length, sbPeerConnection: !!window.demo.sb?.pc, packets: 0, frames: 0, streams: 0 };
    for (const pc of window.peerConnections) {
      if (pc.connectionState === "closed") continue;
      for (const s of (await pc.getStats()).values()) {
        if (s.type !== "inbound-rtp") continue;
        out.streams++;
        out.packets += s.packetsReceived ?? 0;
        out.frames += s.framesDecoded ?? 0;
      }
    }
    return out;
  });
}

/** The page's remote video: decoding, with frames still coming after `ms`. */
async function decoding(page, who, ms = 1500) {
  const first = await waitUntil(async () => {
    const [v] = await subscriptionStats(page, "video");
    return v && v.framesDecoded > 10 && v.frameWidth > 0 ? v : null;
  }, 30_000, `${who} decoding video`);
  await sleep(ms);
  const [v] = await subscriptionStats(page, "video");
  assert.ok(v.framesDecoded > first.framesDecoded + 10, `${who}: frames keep being decoded (${first.framesDecoded} -> ${v.framesDecoded})`);
  assert.ok(v.frameWidth > 0, `${who}: frameWidth ${v.frameWidth}`);
  return v;
}

/** An identity with an externalId (its token's `org` follows it) and a voip token, over REST. */
async function person(server, externalId) {
  const r = await server.acs("POST", "/identities?api-version=2025-06-30", { createTokenWithScopes: ["voip"], externalId });
  return { identity: r.identity.id, token: r.accessToken.token };
}

const screen = (page) => page.evaluate(() => window.demo.screen);

test("a meeting's lobby: a wrong passcode, waiting with nothing received, admitted into the call, rejected", async () => {
  const server = await startServer({ env: { SWITCHBOARD__ORGANIZATION__MEMBER_DOMAINS: '["*@contoso.com"]' } });
  let browser;
  try {
    browser = await launchBrowser();
    const olga = await person(server, "olga@contoso.com");
    const meeting = await server.acs("POST", "/meetings", {
      subject: "Design review",
      participants: { organizer: { identity: { user: { id: olga.identity } } } },
      lobbyBypassSettings: { scope: "organization" },
      allowedPresenters: "organizer",
      joinMeetingIdSettings: { isPasscodeRequired: true },
    });
    const { joinMeetingId, passcode } = meeting.joinMeetingIdSettings;
    assert.match(joinMeetingId, /^\d{12}$/);
    assert.ok(passcode, "the meeting has a passcode");
    assert.ok(meeting.joinWebUrl.startsWith(`${server.endpoint}meet/`), `the join link is on this server: ${meeting.joinWebUrl}`);

    // Olga opens the join link itself: the call page, with the link filled in.
    const path = new URL(meeting.joinWebUrl).pathname.slice(1);
    const o = await openDemo(browser, server.endpoint, `${path}#name=Olga%20Organizer`, DESKTOP);
    await o.waitForSelector("#preview video");
    assert.equal(await o.getAttribute("#tab-meeting", "aria-selected"), "true", "the Meeting tab is chosen");
    assert.equal(await o.inputValue("#meeting-link"), meeting.joinWebUrl);
    assert.equal(await signIn(o, olga.token), olga.identity);
    await shotBoth(o, "1-join-form-link", "#form-meeting");
    await o.click("#join-meeting");
    await o.waitForFunction(() => window.demo.joined === true, null, { timeout: 30_000 });
    assert.equal(await o.evaluate(() => window.demo.call.role), "Presenter", "the organizer presents");
    assert.match(await o.textContent("#call-title"), /Meeting/);
    // She sends her camera (the tile shows it, and the server has her video track).
    await o.waitForFunction(() => [...window.demo.sb.published.values()].some((p) => p.kind === "video"), null, { timeout: 10_000 });

    // Eve: the meeting ID from the address, a wrong passcode first.
    const e = await openDemo(browser, server.endpoint, `#meetingId=${joinMeetingId}&name=Eve`, { ...PHONE, initScript: recordPeerConnections });
    await e.waitForSelector("#preview video");
    const eve = await signIn(e);
    assert.equal(await e.inputValue("#meeting-id"), joinMeetingId.replace(/(\d{3})(?=\d)/g, "$1 "), "the ID is shown in groups of three");
    await e.fill("#meeting-passcode", passcode === "000000" ? "111111" : "000000");
    await e.click("#join-meeting");
    await e.waitForSelector("#meeting-error:not([hidden])", { timeout: 10_000 });
    assert.equal(await e.evaluate(() => window.demo.endReason), "WrongPasscode");
    assert.equal(await screen(e), "lobby", "still on the form, where the passcode can be fixed");
    assert.equal(await e.getAttribute("#meeting-error", "role"), "alert");
    assert.match(await e.textContent("#meeting-error"), /passcode is not right/);
    assert.equal(await e.getAttribute("#meeting-passcode", "aria-invalid"), "true");
    const look = await e.evaluate(() => {
      const box = getComputedStyle(document.getElementById("meeting-error"));
      return { border: box.borderTopColor, input: getComputedStyle(document.getElementById("meeting-passcode")).borderTopColor, focused: document.activeElement.id };
    });
    assert.equal(look.border, "rgb(217, 63, 63)", "the error has the danger colour");
    assert.equal(look.input, "rgb(217, 63, 63)", "so does the passcode field");
    assert.equal(look.focused, "meeting-passcode", "the passcode field has the focus");
    await shotBoth(e, "2-wrong-passcode", "#form-meeting");

    // The right passcode: Eve waits in the lobby.
    await e.fill("#meeting-passcode", passcode);
    assert.equal(await e.getAttribute("#meeting-error", "hidden"), "", "typing clears the error");
    await shotBoth(e, "3-join-form-id", "#form-meeting");
    await e.click("#join-meeting");
    await e.waitForFunction(() => window.demo.screen === "waiting" && window.demo.callState === "InLobby", null, { timeout: 10_000 });
    const waitingSince = Date.now();
    assert.equal(await e.textContent("#waiting-title"), "Waiting to be admitted");
    await e.waitForFunction(() => document.querySelector("#waiting-media video")?.videoWidth > 0, null, { timeout: 10_000 });
    assert.equal(await e.getAttribute("#wait-cam", "aria-pressed"), "true");

    // Olga: a count on the toolbar, a notice, and Eve in the lobby panel with her identity.
    await o.waitForFunction(() => document.getElementById("lobby-count").textContent === "1" && !document.getElementById("lobby-count").hidden, null, { timeout: 10_000 });
    await o.waitForSelector(".toast:has-text('Eve is waiting in the lobby')");
    const lobbyView = await o.evaluate(() => {
      const [p] = window.demo.call.lobby.participants;
      window.eveInLobby = p;
      return { n: window.demo.call.lobby.participants.length, state: p.state, id: p.identifier.communicationUserId, name: p.displayName };
    });
    assert.deepEqual(lobbyView, { n: 1, state: "InLobby", id: eve, name: "Eve" });
    await o.click("#lobby-button");
    await o.waitForSelector("#lobby-list li >> text=Eve");
    assert.match(await o.textContent("#lobby-list li"), new RegExp(`${eve.slice(-8)} · waiting \\d:\\d\\d`), "name, identity and how long");
    await shotBoth(e, "4-waiting");

    // For at least five seconds Eve receives nothing while Olga sends her camera: no peer
    // connection, or one that has received no RTP.
    let checks = 0;
    while (Date.now() - waitingSince < 5500 || checks < 5) {
      const got = await inbound(e);
      assert.equal(got.packets, 0, `Eve received no RTP while waiting (${JSON.stringify(got)})`);
      assert.equal(got.frames, 0, "Eve decoded nothing while waiting");
      assert.equal(got.sbPeerConnection, false, "the waiting page has no peer connection");
      assert.equal(await e.evaluate(() => window.demo.call.remoteParticipants.length), 0, "and knows nobody in the meeting");
      checks++;
      await sleep(500);
    }
    console.log(`# Eve waited ${Date.now() - waitingSince} ms; ${checks} checks, no inbound RTP, ${(await inbound(e)).peerConnections} peer connections made`);
    await shotBoth(o, "5-lobby-panel");

    // Olga admits Eve: Eve goes straight into the call, and they see each other.
    await o.click("#lobby-list button[data-action=admit]");
    await e.waitForFunction(() => window.demo.screen === "incall" && window.demo.callState === "Connected", null, { timeout: 10_000 });
    assert.equal(await e.evaluate(() => window.demo.call.role), "Attendee", "only the organizer presents (allowedPresenters)");
    assert.ok(await e.evaluate(() => document.getElementById("lobby-button").hidden), "an attendee has no lobby to manage");
    await o.waitForFunction(() => document.getElementById("lobby-count").hidden && window.demo.call.lobby.participants.length === 0, null, { timeout: 10_000 });
    assert.ok(await o.evaluate(() => window.demo.call.remoteParticipants.includes(window.eveInLobby) && window.eveInLobby.state === "Connected"), "the lobby's RemoteParticipant is the one in the call");
    await e.waitForFunction(() => window.demo.joined === true, null, { timeout: 20_000 });
    await decoding(e, "Eve");
    await decoding(o, "Olga");
    assert.equal(await e.textContent("figure.tile.remote .name"), "Olga Organizer");
    assert.equal(await o.textContent("figure.tile.remote .name"), "Eve");
    await o.click("#lobby-close");
    await sleep(500);
    await shotBoth(e, "6-admitted-in-call");
    await shotBoth(o, "7-organizer-in-call");

    // Rex (by link, from the address) and Ria (by ID) wait together; Olga turns Rex away and
    // admits the rest with "Admit all".
    const r = await openDemo(browser, server.endpoint, `#meeting=${encodeURIComponent(meeting.joinWebUrl)}&name=Rex&camera=off`, DESKTOP);
    const ria = await openDemo(browser, server.endpoint, `#meetingId=${joinMeetingId}&passcode=${passcode}&name=Ria&camera=off&subscribe=0`, DESKTOP);
    for (const page of [r, ria]) {
      await signIn(page);
      await page.click("#join-meeting");
      await page.waitForFunction(() => window.demo.screen === "waiting", null, { timeout: 10_000 });
    }
    assert.equal(await r.inputValue("#meeting-link"), meeting.joinWebUrl);
    await o.waitForFunction(() => document.getElementById("lobby-count").textContent === "2", null, { timeout: 10_000 });
    // This time through the notice's button.
    await o.click(".toast:has-text('waiting in the lobby') button.action >> nth=0");
    await o.waitForSelector("#lobby-list li >> nth=1");
    assert.deepEqual(await o.$$eval("#lobby-list li .who > span:first-child", (els) => els.map((e) => e.textContent)), ["Rex", "Ria"], "oldest first");
    assert.equal(await o.textContent("#admit-all"), "Admit all 2");
    await shot(o, "desktop-5b-lobby-panel-two-waiting");
    await o.click("#lobby-list li:has-text('Rex') button[data-action=reject]");
    await r.waitForFunction(() => window.demo.screen === "ended", null, { timeout: 10_000 });
    assert.equal(await r.evaluate(() => window.demo.endReason), "LobbyRejected");
    assert.equal(await r.textContent("#ended-title"), "You were not let in");
    assert.match(await r.textContent("#ended-detail"), /turned down your request to join/);
    assert.equal(await r.getAttribute("#ended .ended-card", "role"), "alert");
    assert.ok(await r.evaluate(() => document.getElementById("again").hidden), "no rejoin button after a rejection");
    await shotBoth(r, "8-rejected");
    await o.waitForFunction(() => document.getElementById("lobby-count").textContent === "1", null, { timeout: 10_000 });
    await o.click("#admit-all");
    await ria.waitForFunction(() => window.demo.screen === "incall" && window.demo.callState === "Connected", null, { timeout: 10_000 });
    await o.waitForFunction(() => document.getElementById("lobby-count").hidden && window.demo.call.remoteParticipants.length === 2, null, { timeout: 10_000 });
    assert.deepEqual(await o.evaluate(() => window.demo.call.remoteParticipants.map((p) => p.displayName).sort()), ["Eve", "Ria"], "Rex never joined");
  } finally {
    await browser?.close();
    await server.stop();
  }
});

test("a lobby wait times out; leaving the lobby", async () => {
  const server = await startServer({ env: { SWITCHBOARD__MEETINGS__LOBBY_TIMEOUT_SECONDS: "4" } });
  let browser;
  try {
    browser = await launchBrowser();
    const olga = await person(server, "olga@contoso.com");
    const meeting = await server.acs("POST", "/meetings", {
      participants: { organizer: { identity: { user: { id: olga.identity } } } },
      lobbyBypassSettings: { scope: "organizer" },
    });
    // Nobody who could admit is there: Eve waits, leaves, asks again, and times out.
    const e = await openDemo(browser, server.endpoint, `#meetingId=${meeting.joinMeetingIdSettings.joinMeetingId}&name=Eve&camera=off&mic=off`, PHONE);
    await signIn(e);
    await e.click("#join-meeting");
    await e.waitForFunction(() => window.demo.screen === "waiting", null, { timeout: 10_000 });
    assert.equal(await e.getAttribute("#wait-mic", "aria-pressed"), "false", "the choices made before joining hold");
    assert.equal(await e.getAttribute("#wait-cam", "aria-pressed"), "false");
    await e.click("#wait-leave");
    await e.waitForFunction(() => window.demo.screen === "ended", null, { timeout: 10_000 });
    assert.equal(await e.textContent("#ended-title"), "You left the lobby");
    assert.equal(await e.textContent("#again"), "Ask again");
    await e.click("#again");
    await e.waitForFunction(() => window.demo.screen === "waiting", null, { timeout: 10_000 });
    const asked = Date.now();
    await e.waitForFunction(() => window.demo.screen === "ended", null, { timeout: 15_000 });
    console.log(`# the lobby wait ended after ${Date.now() - asked} ms (timeout 4 s)`);
    assert.equal(await e.evaluate(() => window.demo.endReason), "LobbyTimeout");
    assert.equal(await e.textContent("#ended-title"), "Nobody let you in");
    assert.match(await e.textContent("#ended-detail"), /You waited 0:0\d\./);
    assert.equal(await e.evaluate(() => document.getElementById("again").hidden), false, "asking again is offered");
    await shotBoth(e, "9-timed-out");
  } finally {
    await browser?.close();
    await server.stop();
  }
});
