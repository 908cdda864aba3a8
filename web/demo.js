// The demo page, built on /calling.js (the ACS-shaped SDK): sign in with a token, preview the
// camera, then join a group call, a meeting (waiting in its lobby when the meeting says so), a
// room, or call someone; answer calls that ring here; admit people from a meeting's lobby.
// Exposes `window.demo` for automated tests (see tests/browser/harness.mjs).
import { CallClient, AzureCommunicationTokenCredential, LocalVideoStream, VideoStreamRenderer } from "/calling.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.hash.slice(1));
// `#subscribe=0` makes a publish-only page (tests, or a camera that watches nothing).
const watchVideo = params.get("subscribe") !== "0";
const LAYERS = ["low", "medium", "high"];

const demo = {
  registered: false,
  joined: false,
  identity: null,
  callAgent: null,
  call: null,
  incoming: null,
  lastIncomingEnd: null,
  screen: "lobby",
  callState: null,
  endReason: null,
  /** The low-level client of the current connection (tests read its stats). */
  get sb() {
    return demo.callAgent?._sb ?? null;
  },
};
window.demo = demo;

const callClient = new CallClient();
let deviceManager = null;
let localVideoStream = null;
let preview = null; // {renderer, view}
// `#camera=off` / `#mic=off` start with that device off.
const want = { mic: params.get("mic") !== "off", cam: params.get("camera") !== "off" };

// ---- notices --------------------------------------------------------------------------------

/**
 * A notice: errors are red and announced (role=alert); the rest are quiet (role=status).
 * `action` ({label, run}) adds a button that does something and dismisses the notice.
 */
function toast(text, kind = "info", ms = kind === "error" ? 9000 : 4500, action = null) {
  const el = document.createElement("div");
  el.className = `toast ${kind}`;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
  const span = document.createElement("span");
  span.textContent = text;
  if (action) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "action";
    b.textContent = action.label;
    b.onclick = () => {
      el.remove();
      action.run();
    };
    span.append(" ", b);
  }
  const close = document.createElement("button");
  close.className = "close";
  close.type = "button";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.onclick = () => el.remove();
  el.append(span, close);
  $("toasts").append(el);
  setTimeout(() => el.remove(), ms);
  return el;
}

async function copy(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    toast(`${what} copied`, "success", 2500);
  } catch {
    toast(`${what}: ${text}`, "info", 15000);
  }
}

function setPresence(state, text) {
  $("presence").dataset.state = state;
  $("presence-text").textContent = text;
}

/** The screens: "lobby" (before a call: sign in, devices, ways to meet), "waiting" (in a
 * meeting's lobby), "incall", "ended". */
function showScreen(name) {
  demo.screen = name;
  document.body.classList.toggle("in-call", name === "incall");
  for (const screen of ["lobby", "waiting", "incall", "ended"]) $(screen).hidden = name !== screen;
}

// ---- people ---------------------------------------------------------------------------------

function initials(name) {
  const words = (name ?? "").split(/\s+/).map((w) => w.replace(/[^\p{L}\p{N}]/gu, "")).filter(Boolean);
  if (!words.length) return "?";
  return (words[0][0] + (words.length > 1 ? words.at(-1)[0] : "")).toUpperCase();
}

function colour(seed) {
  let h = 0;
  for (const c of seed ?? "") h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360} 45% 38%)`;
}

/** Initials, or a person icon for someone without a name. */
function setAvatar(el, name) {
  const text = initials(name);
  if (text === "?") el.innerHTML = `<svg class="person"><use href="#i-person"/></svg>`;
  else el.textContent = text;
}

function shortId(id) {
  if (!id) return "";
  const tail = id.split("_").pop() ?? id;
  return `…${tail.slice(-8)}`;
}

function nameOf(p) {
  if (p.displayName) return p.displayName;
  const id = shortId(p.identifier?.communicationUserId);
  return p.state === "Connected" || p.state === "InLobby" ? `Guest ${id}` : id;
}

function mmss(seconds) {
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

/** "483 920 175 546": a meeting ID as people read it out. */
function formatMeetingId(id) {
  return String(id).replace(/(\d{3})(?=\d)/g, "$1 ");
}

function myName() {
  return $("name").value.trim();
}

// ---- devices and preview ------------------------------------------------------------------------

function setToggle(button, on) {
  button.setAttribute("aria-pressed", String(on));
}

async function fillDevices() {
  const [cameras, mics] = await Promise.all([deviceManager.getCameras(), deviceManager.getMicrophones()]);
  const fill = (select, devices, selectedId) => {
    select.replaceChildren(...devices.map((d) => new Option(d.name, d.id, false, d.id === selectedId)));
    select.disabled = devices.length === 0;
    if (!devices.length) select.append(new Option("none found", ""));
  };
  fill($("camera-select"), cameras, localVideoStream?.source?.id);
  fill($("mic-select"), mics, deviceManager.selectedMicrophone?.id);
  return { cameras, mics };
}

async function startPreview() {
  stopPreview();
  $("preview-name").textContent = myName() || "You";
  $("preview-avatar").textContent = initials(myName());
  const off = !want.cam || !localVideoStream;
  $("preview").classList.toggle("video-off", off);
  if (off) return;
  const renderer = new VideoStreamRenderer(localVideoStream);
  preview = { renderer };
  try {
    const view = await renderer.createView({ scalingMode: "Crop", isMirrored: true });
    if (preview?.renderer !== renderer) return view.dispose();
    preview.view = view;
    $("preview-media").append(view.target);
  } catch (e) {
    toast(`Could not start the camera: ${e.message}`, "error");
    want.cam = false;
    setToggle($("pre-cam"), false);
    $("preview").classList.add("video-off");
  }
}

function stopPreview() {
  preview?.renderer.dispose();
  preview = null;
}

async function initDevices() {
  deviceManager = await callClient.getDeviceManager();
  // Both, even with the camera off for now: device names and IDs come with the permission.
  const access = await deviceManager.askDevicePermission({ audio: true, video: true });
  if (!access.video) want.cam = false;
  if (!access.audio) want.mic = false;
  if (!access.audio || !access.video) {
    toast(`No access to the ${!access.audio && !access.video ? "camera and microphone" : !access.video ? "camera" : "microphone"}. Allow it in the browser, or join without.`, "error");
  }
  const { cameras, mics } = await fillDevices();
  if (cameras.length) localVideoStream = new LocalVideoStream(cameras[0]);
  else want.cam = false;
  if (mics.length) await deviceManager.selectMicrophone(mics.find((m) => m.isSystemDefault) ?? mics[0]);
  setToggle($("pre-mic"), want.mic);
  setToggle($("pre-cam"), want.cam);
  deviceManager.on("videoDevicesUpdated", () => fillDevices());
  deviceManager.on("audioDevicesUpdated", () => fillDevices());
  await startPreview();
}

$("pre-mic").onclick = () => {
  want.mic = !want.mic;
  setToggle($("pre-mic"), want.mic);
};
$("pre-cam").onclick = async () => {
  want.cam = !want.cam && !!localVideoStream;
  setToggle($("pre-cam"), want.cam);
  await startPreview();
};
$("camera-select").onchange = async (e) => {
  const camera = (await deviceManager.getCameras()).find((c) => c.id === e.target.value);
  if (camera && localVideoStream) await localVideoStream.switchSource(camera);
};
$("mic-select").onchange = async (e) => {
  const mic = (await deviceManager.getMicrophones()).find((m) => m.id === e.target.value);
  if (mic) await deviceManager.selectMicrophone(mic);
};
$("name").value = params.get("name") ?? localStorage.getItem("sb-name") ?? "";
$("name").addEventListener("input", () => {
  localStorage.setItem("sb-name", myName());
  $("preview-name").textContent = myName() || "You";
  $("preview-avatar").textContent = initials(myName());
});
$("name").addEventListener("change", () => {
  demo.callAgent?.setDisplayName(myName() || undefined).catch(() => {});
  updatePresence();
});

// ---- signing in -----------------------------------------------------------------------------

function signinError(text) {
  $("signin-error").textContent = text ?? "";
  $("signin-error").hidden = !text;
}

function explain(e) {
  switch (e?.code) {
    case "TokenInvalid":
      return "The server does not accept this token (not issued by it, tampered, or malformed).";
    case "TokenExpired":
      return "This token has expired. Get a new one.";
    case "TokenRevoked":
      return "This token was revoked (or its identity deleted).";
    case "TokenScopeInsufficient":
      return "This token does not allow calls: issue it with the voip scope.";
    case "ConnectionFailed":
      return "Cannot reach the server's signaling endpoint.";
    default:
      return e?.message ?? String(e);
  }
}

function updatePresence() {
  const agent = demo.callAgent;
  if (!agent) return setPresence("offline", "Not signed in");
  if (agent.connectionState !== "Connected") return setPresence("reconnecting", "Reconnecting…");
  setPresence("online", `Online as ${myName() || "Guest"} · ${shortId(demo.identity)}`);
}

let signingIn = false;

async function signIn(token) {
  // One sign-in at a time; a page already signed in keeps its agent (and its call).
  if (signingIn) return false;
  signingIn = true;
  try {
    return await signInOnce(token);
  } finally {
    signingIn = false;
  }
}

async function signInOnce(token) {
  signinError(null);
  if (demo.call) {
    signinError("Leave the call before you sign in with another token.");
    return false;
  }
  let credential;
  try {
    credential = new AzureCommunicationTokenCredential(token.trim());
  } catch (e) {
    signinError(`That is not an access token: ${e.message}.`);
    return false;
  }
  setPresence("reconnecting", "Signing in…");
  let agent;
  try {
    agent = await callClient.createCallAgent(credential, { displayName: myName() || undefined });
  } catch (e) {
    signinError(explain(e));
    updatePresence();
    return false;
  }
  await demo.callAgent?.dispose();
  demo.callAgent = agent;
  demo.identity = agent.identifier.communicationUserId;
  demo.registered = true;
  sessionStorage.setItem("sb-token", token.trim());
  agent.on("incomingCall", ({ incomingCall }) => onIncomingCall(incomingCall));
  agent.on("connectionStateChanged", ({ newValue, reason }) => {
    updatePresence();
    if (newValue === "Disconnected" && reason === "TokenRevoked") toast("Your token was revoked; sign in again.", "error");
    if (newValue === "Disconnected" && reason === "TokenExpired") toast("Your token expired; sign in again.", "error");
  });
  $("my-id").textContent = demo.identity;
  $("signin").hidden = true;
  $("identity-box").hidden = false;
  $("meet").disabled = false;
  $("meet-hint").hidden = true;
  updatePresence();
  return true;
}

$("dev-token").onclick = async () => {
  if (signingIn) return;
  $("dev-token").disabled = true;
  try {
    const r = await fetch("/dev/token", { method: "POST" });
    if (r.status === 404) {
      signinError("This server does not hand out dev tokens. Start it with [dev] token_endpoint = true (SWITCHBOARD__DEV__TOKEN_ENDPOINT=true), or paste a token from `switchboard token issue`.");
      $("paste").open = true;
      return;
    }
    if (!r.ok) throw new Error(`POST /dev/token answered ${r.status}`);
    const { token } = await r.json();
    $("token").value = token;
    await signIn(token);
  } catch (e) {
    signinError(`Could not get a dev token: ${e.message}`);
  } finally {
    $("dev-token").disabled = false;
  }
};
$("use-token").onclick = () => signIn($("token").value);
$("copy-id").onclick = () => copy(demo.identity, "Your ID");
$("sign-out").onclick = async () => {
  await demo.callAgent?.dispose();
  demo.callAgent = null;
  demo.registered = false;
  demo.identity = null;
  sessionStorage.removeItem("sb-token");
  $("signin").hidden = false;
  $("identity-box").hidden = true;
  $("meet").disabled = true;
  $("meet-hint").hidden = false;
  updatePresence();
};

// ---- the three ways to meet -----------------------------------------------------------------

const TABS = ["group", "meeting", "room", "direct"];
function selectTab(which) {
  for (const t of TABS) {
    $(`tab-${t}`).setAttribute("aria-selected", String(t === which));
    $(`form-${t}`).hidden = t !== which;
  }
}
for (const t of TABS) $(`tab-${t}`).onclick = () => selectTab(t);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
$("group").value = params.get("group") ?? crypto.randomUUID();
$("new-group").onclick = () => ($("group").value = crypto.randomUUID());
if (params.get("room")) $("room").value = params.get("room");
if (params.get("call")) $("callee").value = params.get("call");
// A meeting: its join link is this page at /meet/<token>, or `#meeting=<link>`, or
// `#meetingId=<12 digits>&passcode=<passcode>`.
const linkInPath = /^\/meet\/[^/]+\/?$/.test(location.pathname) ? `${location.origin}${location.pathname}` : null;
$("meeting-link").value = params.get("meeting") ?? linkInPath ?? "";
$("meeting-id").value = params.get("meetingId") ? formatMeetingId(params.get("meetingId").replace(/\s+/g, "")) : "";
$("meeting-passcode").value = params.get("passcode") ?? "";
const meetingPrefilled = !!($("meeting-link").value || $("meeting-id").value);
selectTab(params.get("room") ? "room" : params.get("call") ? "direct" : params.get("group") ? "group" : meetingPrefilled ? "meeting" : "group");
// One way or the other: typing a link clears the ID and passcode, and the other way round.
$("meeting-link").addEventListener("input", () => {
  if ($("meeting-link").value) $("meeting-id").value = $("meeting-passcode").value = "";
  meetingError(null);
});
for (const id of ["meeting-id", "meeting-passcode"]) {
  $(id).addEventListener("input", () => {
    if ($(id).value) $("meeting-link").value = "";
    meetingError(null);
  });
}

/** An error under the meeting form, with the field it is about marked and focused. */
function meetingError(text, field) {
  $("meeting-error").textContent = text ?? "";
  $("meeting-error").hidden = !text;
  for (const id of ["meeting-link", "meeting-id", "meeting-passcode"]) $(id).removeAttribute("aria-invalid");
  if (text && field) {
    $(field).setAttribute("aria-invalid", "true");
    $(field).focus();
  }
}

function inviteLink(kind, id) {
  if (kind === "meeting") {
    // The meeting's own join link, or the ID and passcode on this page's address.
    if (ctx?.link) return ctx.link;
    const passcode = ctx?.passcode ? `&passcode=${encodeURIComponent(ctx.passcode)}` : "";
    return `${location.origin}/#meetingId=${ctx?.meetingId}${passcode}`;
  }
  // Not on a meeting's /meet/ address: that would open the meeting's form too.
  return `${location.origin}${linkInPath ? "/" : location.pathname}#${kind}=${encodeURIComponent(id)}`;
}
$("copy-invite-lobby").onclick = () => copy(inviteLink("group", $("group").value.trim()), "Invite link");

/** Settles once the camera and microphone are set up (joining waits for it). */
let devicesReady = Promise.resolve();

function callOptions() {
  return {
    videoOptions: want.cam && localVideoStream ? { localVideoStreams: [localVideoStream] } : undefined,
    audioOptions: { muted: !want.mic },
  };
}

$("form-group").onsubmit = async (e) => {
  e.preventDefault();
  await devicesReady;
  const groupId = $("group").value.trim();
  if (!UUID.test(groupId)) return toast("A group call ID is a UUID, like 7b0c9f1e-5d3a-4c11-9a57-2f0e1c3b8d42.", "error");
  startMeeting({ kind: "group", id: groupId }, () => demo.callAgent.join({ groupId }, callOptions()));
};
$("form-meeting").onsubmit = async (e) => {
  e.preventDefault();
  meetingError(null);
  await devicesReady;
  const link = $("meeting-link").value.trim();
  const meetingId = $("meeting-id").value.replace(/\s+/g, "");
  const passcode = $("meeting-passcode").value.trim();
  if (link) {
    if (!/\/meet\/[\w-]+/.test(link)) return meetingError("A meeting link looks like https://host/meet/… (the meeting's joinWebUrl).", "meeting-link");
    startMeeting({ kind: "meeting", id: link, link }, () => demo.callAgent.join({ meetingLink: link }, callOptions()));
  } else if (meetingId) {
    if (!/^\d{12}$/.test(meetingId)) return meetingError("A meeting ID has 12 digits.", "meeting-id");
    startMeeting({ kind: "meeting", id: meetingId, meetingId, passcode }, () => demo.callAgent.join({ meetingId, passcode }, callOptions()));
  } else {
    meetingError("Paste the meeting link, or type the meeting ID and its passcode.", "meeting-link");
  }
};
$("form-room").onsubmit = async (e) => {
  e.preventDefault();
  await devicesReady;
  const roomId = $("room").value.trim();
  if (!roomId) return toast("Enter the ID of a room (from POST /rooms).", "error");
  startMeeting({ kind: "room", id: roomId }, () => demo.callAgent.join({ roomId }, callOptions()));
};
$("form-direct").onsubmit = async (e) => {
  e.preventDefault();
  await devicesReady;
  const callee = $("callee").value.trim();
  if (!callee.startsWith("8:acs:")) return toast("An identity ID looks like 8:acs:…_…", "error");
  if (callee === demo.identity) return toast("That is your own ID: call someone else (or open this page in another tab).", "error");
  startMeeting({ kind: "direct", id: callee }, () => demo.callAgent.startCall([{ communicationUserId: callee }], callOptions()));
};

function startMeeting(context, start) {
  if (!demo.callAgent || demo.call) return;
  if (context.kind === "group" || context.kind === "room") location.hash = `${context.kind}=${context.id}`;
  // A meeting's address says how to come back (a /meet/ page already does).
  else if (context.kind === "meeting" && context.meetingId) location.hash = `meetingId=${context.meetingId}${context.passcode ? `&passcode=${encodeURIComponent(context.passcode)}` : ""}`;
  else if (context.kind === "meeting" && !linkInPath) location.hash = `meeting=${encodeURIComponent(context.link)}`;
  let call;
  try {
    call = start();
  } catch (e) {
    return toast(e.message, "error");
  }
  enterCall(call, context);
}

// ---- incoming calls -------------------------------------------------------------------------

const INCOMING_ENDED = {
  AnsweredElsewhere: "Answered on another device",
  Declined: "Declined on another device",
};

function onIncomingCall(incomingCall) {
  const who = incomingCall.callerInfo.displayName || "Someone";
  const id = incomingCall.callerInfo.identifier.communicationUserId;
  if (demo.call || demo.incoming) {
    toast(`${who} is calling, but you are busy.`, "info");
    return;
  }
  demo.incoming = incomingCall;
  $("caller-name").textContent = who;
  $("caller-id").textContent = id;
  $("caller-avatar").textContent = initials(incomingCall.callerInfo.displayName);
  $("caller-avatar").style.background = colour(id);
  $("answer-with").textContent = `You answer with the camera ${want.cam ? "on" : "off"} and the microphone ${want.mic ? "on" : "off"}.`;
  let declinedHere = false;
  incomingCall.on("callEnded", ({ callEndReason }) => {
    demo.lastIncomingEnd = callEndReason.name;
    if (demo.incoming === incomingCall) demo.incoming = null;
    $("incoming").close();
    if (declinedHere) return;
    const text = INCOMING_ENDED[callEndReason.name] ?? `Missed call from ${who}`;
    toast(text, "info", 8000);
  });
  $("accept").onclick = async () => {
    $("accept").disabled = $("decline").disabled = true;
    try {
      await devicesReady;
      stopPreview();
      const call = await incomingCall.accept(callOptions());
      $("incoming").close();
      demo.incoming = null;
      enterCall(call, { kind: "incoming", id, peerName: who });
    } catch {
      // callEnded said why (answered elsewhere, cancelled)
      if (demo.screen === "lobby") startPreview();
    } finally {
      $("accept").disabled = $("decline").disabled = false;
    }
  };
  $("decline").onclick = async () => {
    declinedHere = true;
    $("incoming").close();
    await incomingCall.reject().catch(() => {});
  };
  $("incoming").showModal();
}

// ---- in the call ------------------------------------------------------------------------------

let ctx = null; // {kind, id, peerName}
let tiles = new Map(); // key -> Tile
let grid = null;
let connectedAt = 0;
let waitingSince = 0; // when this page started waiting in a meeting's lobby
let clock = null;
let hungUpHere = false;
let waitingPreview = null; // {renderer, view}: your camera while you wait (nothing is sent)

/** A video tile: a participant (or you), with name, mute and camera-off badges. */
class Tile {
  constructor({ key, name, seed, self = false }) {
    this.key = key;
    this.self = self;
    this.stream = null;
    this.renderer = null;
    this.view = null;
    const f = document.createElement("figure");
    f.className = `tile video-off ${self ? "self" : "remote"}`;
    f.innerHTML = `<div class="media"></div><div class="center"><div class="avatar"></div><div class="status"></div></div>
      <figcaption class="nameplate"><span class="badge mic" title="Muted"><svg><use href="#i-mic-off"/></svg></span><span class="badge cam" title="Camera off"><svg><use href="#i-cam-off"/></svg></span><span class="name"></span></figcaption>
      <div class="diag"><span class="info">no video</span></div>`;
    this.figure = f;
    this.media = f.querySelector(".media");
    this.setName(name);
    f.querySelector(".avatar").style.background = colour(seed ?? key);
    if (!self) this.addLayerButtons();
  }

  setName(name, avatarName = name) {
    this.name = name;
    this.figure.querySelector(".name").textContent = this.self ? `${name} (you)` : name;
    setAvatar(this.figure.querySelector(".avatar"), avatarName);
  }

  setMuted(muted) {
    this.figure.classList.toggle("muted", muted);
  }

  setSpeaking(on) {
    this.figure.classList.toggle("speaking", on);
  }

  setStatus(text) {
    this.figure.querySelector(".status").textContent = text ?? "";
    this.figure.classList.toggle("pending", !!text);
  }

  setVideoOn(on) {
    this.figure.classList.toggle("video-off", !on);
  }

  addLayerButtons() {
    const diag = this.figure.querySelector(".diag");
    for (const [label, layer] of [["auto", undefined], ["low", 0], ["medium", 1], ["high", 2]]) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      b.dataset.layer = label;
      b.setAttribute("aria-pressed", String(label === "auto"));
      b.onclick = async () => {
        for (const x of diag.querySelectorAll("button")) x.setAttribute("aria-pressed", String(x === b));
        await this.stream?.setPreferredLayer(layer);
      };
      diag.append(b);
    }
  }

  /** Show a video stream (local or remote) in this tile. */
  async show(stream, { scalingMode, isMirrored = false } = {}) {
    if (this.stream === stream && this.renderer) return;
    this.hide();
    this.stream = stream;
    const renderer = new VideoStreamRenderer(stream);
    this.renderer = renderer;
    try {
      const view = await renderer.createView({ scalingMode, isMirrored });
      if (this.renderer !== renderer) return view.dispose();
      this.view = view;
      this.media.append(view.target);
    } catch (e) {
      if (this.renderer === renderer) this.renderer = null;
      toast(`Could not show video: ${e.message}`, "error");
    }
  }

  hide() {
    this.renderer?.dispose();
    this.renderer = null;
    this.view = null;
    this.stream = null;
  }

  dispose() {
    this.hide();
    this.figure.remove();
  }
}

function scalingFor(tile) {
  return $("stage").dataset.layout === "pair" && !tile.self ? "Fit" : "Crop";
}

function layout() {
  const stage = $("stage");
  const all = [...tiles.values()];
  const remote = all.filter((t) => !t.self);
  stage.dataset.layout = all.length <= 1 ? "solo" : all.length === 2 && remote.length === 1 ? "pair" : "grid";
  // Remote tiles first, you last (in a grid); the largest 16:9 tiles that fit the stage.
  for (const t of remote) grid.append(t.figure);
  const self = all.find((t) => t.self);
  if (self) grid.append(self.figure);
  if (stage.dataset.layout === "grid") {
    const W = stage.clientWidth;
    const H = stage.clientHeight;
    const gap = 8;
    const n = all.length;
    let best = { cols: 1, w: 0 };
    for (let cols = 1; cols <= n; cols++) {
      const rows = Math.ceil(n / cols);
      const w = Math.min((W - gap * (cols - 1)) / cols, ((H - gap * (rows - 1)) / rows) * (16 / 9));
      if (w > best.w) best = { cols, w };
    }
    grid.style.setProperty("--cols", best.cols);
    grid.style.setProperty("--tile-w", `${Math.floor(best.w)}px`);
  }
  for (const t of all) if (t.view && t.view.scalingMode !== scalingFor(t)) t.view.updateScalingMode(scalingFor(t));
  renderPeople();
}

function stateText(call) {
  switch (call.state) {
    case "None":
    case "Connecting":
      return ctx?.kind === "direct" ? "Calling…" : "Connecting…";
    case "Ringing":
      return "Ringing…";
    case "Connected": {
      const s = Math.floor((Date.now() - connectedAt) / 1000);
      return `Connected · ${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    }
    case "InLobby":
      return "Waiting in the lobby…";
    case "Disconnecting":
      return "Leaving…";
    case "Disconnected":
      return `Call ended: ${endSummary(call).short}`;
    default:
      return call.state;
  }
}

function titleText() {
  if (!ctx) return "";
  if (ctx.kind === "group") return `Group call ${ctx.id}`;
  if (ctx.kind === "room") return `Room ${ctx.id}`;
  if (ctx.kind === "meeting") return ctx.meetingId ? `Meeting ${formatMeetingId(ctx.meetingId)}` : "Meeting";
  const peer = demo.call?.remoteParticipants[0];
  if (peer?.displayName) ctx.peerName = peer.displayName;
  return `Call with ${ctx.peerName ?? shortId(ctx.id)}`;
}

function renderHeader(call) {
  if (!call) return;
  demo.callState = call.state;
  $("call-state").textContent = stateText(call);
  $("call-state").dataset.tone = call.state === "Disconnected" && endSummary(call).error ? "error" : "";
  $("call-title").textContent = titleText();
  $("copy-invite").hidden = !(ctx?.kind === "group" || ctx?.kind === "room" || ctx?.kind === "meeting");
}

function selfTile() {
  return tiles.get("self");
}

async function renderSelf(call) {
  const t = selfTile();
  if (!t) return;
  // While waiting in the lobby the waiting screen shows your camera.
  if (call.state === "InLobby") return t.hide();
  t.setName(myName() || "You");
  t.setMuted(call.isMuted);
  setToggle($("mic"), !call.isMuted);
  const videoOn = call.isLocalVideoStarted || (call.state !== "Connected" && call.localVideoStreams.length > 0);
  setToggle($("cam"), videoOn);
  // What the role allows (a room's Consumer sends nothing, an Attendee no screen).
  const may = call.capabilities?.publish ?? ["microphone", "camera"];
  $("cam").disabled = !localVideoStream || !may.includes("camera");
  $("mic").disabled = !may.includes("microphone");
  $("cam").title = may.includes("camera") ? "" : `Your role (${call.role}) cannot send video`;
  $("mic").title = may.includes("microphone") ? "" : `Your role (${call.role}) cannot send audio`;
  t.setVideoOn(videoOn);
  if (videoOn && localVideoStream) await t.show(localVideoStream, { scalingMode: "Crop", isMirrored: true });
  else t.hide();
}

function participantTile(p) {
  const key = p; // the RemoteParticipant object is stable (a callee we rang keeps it)
  if (tiles.has(key)) return tiles.get(key);
  const tile = new Tile({ key, name: nameOf(p), seed: p.identifier.communicationUserId });
  tiles.set(key, tile);
  grid.append(tile.figure);
  const refresh = () => {
    if (p.participantId !== undefined) tile.figure.dataset.participant = p.participantId;
    tile.setName(nameOf(p), p.displayName ?? "");
    tile.setMuted(p.isMuted);
    tile.setSpeaking(p.isSpeaking);
    tile.setStatus(p.state === "Connected" ? "" : p.state === "Ringing" ? "Ringing…" : p.state === "Connecting" ? "Calling…" : p.state);
    const video = p.videoStreams.find((s) => s.mediaStreamType === "Video");
    tile.setVideoOn(!!video?.isAvailable);
    if (video && watchVideo) {
      if (tile.stream !== video) {
        video.on("isAvailableChanged", refresh);
        tile.show(video, { scalingMode: scalingFor(tile) });
      }
    } else if (!video) {
      tile.hide();
    }
    renderHeader(demo.call);
    renderPeople();
  };
  for (const ev of ["isMutedChanged", "isSpeakingChanged", "stateChanged", "displayNameChanged", "videoStreamsUpdated", "roleChanged"]) p.on(ev, refresh);
  refresh();
  return tile;
}

function renderPeople() {
  const call = demo.call;
  if (!call) return;
  const list = $("people-list");
  const rows = [];
  const moderator = call.capabilities?.moderate;
  const row = (name, seed, sub, muted, camOff, avatarName = name, p = null) => {
    const li = document.createElement("li");
    const av = document.createElement("span");
    av.className = "avatar";
    setAvatar(av, avatarName);
    av.style.background = colour(seed);
    const who = document.createElement("span");
    who.className = "who";
    const n = document.createElement("span");
    n.textContent = name;
    who.append(n);
    if (sub) {
      const s = document.createElement("span");
      s.className = "muted";
      s.textContent = sub;
      who.append(s);
    }
    const icons = document.createElement("span");
    icons.className = "icons";
    if (muted) icons.insertAdjacentHTML("beforeend", `<svg aria-label="muted"><use href="#i-mic-off"/></svg>`);
    if (camOff) icons.insertAdjacentHTML("beforeend", `<svg aria-label="camera off"><use href="#i-cam-off"/></svg>`);
    li.append(av, who, icons);
    if (moderator && p?.participantId !== undefined) {
      // A presenter may mute or remove others.
      const actions = document.createElement("span");
      actions.className = "actions";
      const mute = document.createElement("button");
      mute.type = "button";
      mute.textContent = "Mute";
      mute.dataset.action = "mute";
      mute.disabled = p.isMuted;
      mute.onclick = () => p.mute().catch((e) => toast(`Could not mute ${name}: ${e.message}`, "error"));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Remove";
      remove.dataset.action = "remove";
      remove.onclick = () => call.removeParticipant(p.identifier).catch((e) => toast(`Could not remove ${name}: ${e.message}`, "error"));
      actions.append(mute, remove);
      li.append(actions);
    }
    rows.push(li);
  };
  row(`${myName() || "You"} (you)`, demo.identity ?? "self", call.role !== "Unknown" ? call.role : "", call.isMuted, !call.isLocalVideoStarted, myName());
  for (const p of call.remoteParticipants) {
    const video = p.videoStreams.find((s) => s.mediaStreamType === "Video");
    const connected = p.state === "Connected";
    const sub = [p.role !== "Unknown" ? p.role : "", connected ? "" : `${p.state}…`].filter(Boolean).join(" · ");
    row(nameOf(p), p.identifier.communicationUserId, sub, connected && p.isMuted, connected && !video?.isAvailable, p.displayName ?? "", p);
  }
  list.replaceChildren(...rows);
  $("people-title").textContent = `People (${rows.length})`;
  $("people-count").textContent = `(${rows.length})`;
}

// ---- waiting in a meeting's lobby --------------------------------------------------------------

/** The waiting screen: your camera (local only), what you will send, how long you have waited. */
function renderWaiting(call) {
  if (demo.screen !== "waiting") {
    waitingSince = Date.now();
    showScreen("waiting");
  }
  $("waiting-name").textContent = `${myName() || "You"} (you)`;
  setAvatar($("waiting-avatar"), myName());
  $("waiting-avatar").style.background = colour(demo.identity ?? "self");
  const camOn = call.localVideoStreams.length > 0 && !!localVideoStream;
  setToggle($("wait-mic"), !call.isMuted);
  setToggle($("wait-cam"), camOn);
  $("wait-cam").disabled = !localVideoStream;
  $("waiting-preview").classList.toggle("muted", call.isMuted);
  $("waiting-preview").classList.toggle("video-off", !camOn);
  renderWaitingMeta();
  if (camOn) showWaitingPreview();
  else stopWaitingPreview();
}

function renderWaitingMeta() {
  const where = ctx?.meetingId ? `Meeting ${formatMeetingId(ctx.meetingId)}` : "Meeting";
  $("waiting-meta").textContent = `${where} · waiting ${mmss(Math.floor((Date.now() - waitingSince) / 1000))}`;
}

async function showWaitingPreview() {
  if (waitingPreview) return;
  const renderer = new VideoStreamRenderer(localVideoStream);
  waitingPreview = { renderer };
  try {
    const view = await renderer.createView({ scalingMode: "Crop", isMirrored: true });
    if (waitingPreview?.renderer !== renderer) return view.dispose();
    waitingPreview.view = view;
    $("waiting-media").append(view.target);
  } catch (e) {
    if (waitingPreview?.renderer === renderer) waitingPreview = null;
    toast(`Could not start the camera: ${e.message}`, "error");
  }
}

function stopWaitingPreview() {
  waitingPreview?.renderer.dispose();
  waitingPreview = null;
}

$("wait-mic").onclick = async () => {
  const call = demo.call;
  if (!call) return;
  // Before admission this only chooses: the microphone opens once you are let in.
  want.mic = call.isMuted;
  await (call.isMuted ? call.unmute() : call.mute()).catch((e) => toast(e.message, "error"));
};
$("wait-cam").onclick = async () => {
  const call = demo.call;
  if (!call || !localVideoStream) return;
  want.cam = call.localVideoStreams.length === 0;
  await (want.cam ? call.startVideo(localVideoStream) : call.stopVideo(localVideoStream)).catch((e) => toast(`Camera: ${e.message}`, "error"));
};
$("wait-leave").onclick = async () => {
  hungUpHere = true;
  await demo.call?.hangUp().catch((e) => toast(e.message, "error"));
};

// ---- the lobby panel (a meeting's organizer and presenters) ----------------------------------------

function canAdmit(call) {
  return ctx?.kind === "meeting" && call?.state === "Connected" && !!call.capabilities?.moderate;
}

/** Who waits: name, identity, how long; Admit / Reject each, Admit all. And the toolbar count. */
function renderLobby() {
  const call = demo.call;
  const may = canAdmit(call);
  $("lobby-button").hidden = !may;
  if (!may) {
    if (!$("lobby-panel").hidden) showPanel(null);
    return;
  }
  const waiting = call.lobby.participants;
  const n = waiting.length;
  $("lobby-count").textContent = String(n);
  $("lobby-count").hidden = n === 0;
  $("lobby-button").classList.toggle("has-waiting", n > 0);
  $("lobby-button").setAttribute("aria-label", n ? `Lobby: ${n} waiting` : "Lobby: nobody waiting");
  $("lobby-title").textContent = n ? `Lobby · ${n} waiting` : "Lobby";
  $("lobby-empty").hidden = n > 0;
  $("admit-all").textContent = n > 1 ? `Admit all ${n}` : "Admit all";
  $("admit-all").hidden = n === 0;
  const rows = waiting.map((p) => {
    const li = document.createElement("li");
    li.dataset.participant = p.participantId;
    const av = document.createElement("span");
    av.className = "avatar";
    setAvatar(av, p.displayName ?? "");
    av.style.background = colour(p.identifier.communicationUserId);
    const who = document.createElement("span");
    who.className = "who";
    const name = document.createElement("span");
    name.textContent = nameOf(p);
    const sub = document.createElement("span");
    sub.className = "muted";
    sub.title = p.identifier.communicationUserId;
    sub.innerHTML = `<span class="id"></span> · waiting <span class="since"></span>`;
    sub.querySelector(".id").textContent = shortId(p.identifier.communicationUserId);
    who.append(name, sub);
    const actions = document.createElement("span");
    actions.className = "actions";
    const act = (label, cls, action, run) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = cls;
      b.textContent = label;
      b.dataset.action = action;
      b.setAttribute("aria-label", `${label} ${nameOf(p)}`);
      b.onclick = async () => {
        for (const x of actions.querySelectorAll("button")) x.disabled = true;
        try {
          await run();
        } catch (e) {
          for (const x of actions.querySelectorAll("button")) x.disabled = false;
          toast(`Could not ${label.toLowerCase()} ${nameOf(p)}: ${e.message}`, "error");
        }
      };
      actions.append(b);
    };
    act("Admit", "accept", "admit", () => call.lobby.admit(p));
    act("Reject", "reject", "reject", () => call.lobby.reject(p));
    li.append(av, who, actions);
    li._since = p.waitingSince?.getTime() ?? Date.now();
    return li;
  });
  $("lobby-list").replaceChildren(...rows);
  renderLobbyTimes();
}

/** The waiting times only, in place (rebuilding rows under the pointer would eat clicks). */
function renderLobbyTimes() {
  for (const li of $("lobby-list").children) {
    li.querySelector(".since").textContent = mmss(Math.max(0, Math.floor((Date.now() - li._since) / 1000)));
  }
}

$("admit-all").onclick = async () => {
  $("admit-all").disabled = true;
  try {
    await demo.call?.lobby.admitAll();
  } catch (e) {
    toast(`Could not admit everyone: ${e.message}`, "error");
  } finally {
    $("admit-all").disabled = false;
  }
};

function enterCall(call, context) {
  ctx = context;
  demo.call = call;
  demo.joined = false;
  demo.endReason = null;
  hungUpHere = false;
  waitingSince = 0;
  stopPreview();
  stopWaitingPreview();
  if (!$("lobby-panel").hidden) showPanel(null);
  for (const t of tiles.values()) t.dispose();
  tiles = new Map();
  grid = document.createElement("div");
  grid.className = "grid";
  $("stage").replaceChildren(grid);
  const me = new Tile({ key: "self", name: myName() || "You", seed: demo.identity ?? "self", self: true });
  tiles.set("self", me);
  grid.append(me.figure);
  showScreen("incall");
  for (const p of call.remoteParticipants) participantTile(p);
  layout();

  const update = () => {
    if (call.state === "Connected" && !connectedAt) connectedAt = Date.now();
    if (call.state === "InLobby") renderWaiting(call);
    else if (demo.screen === "waiting" && call.state === "Connected") {
      // Admitted: straight into the call.
      stopWaitingPreview();
      showScreen("incall");
      layout();
      toast("You're in: someone let you in from the lobby.", "success", 3000);
    }
    renderHeader(call);
    renderSelf(call);
    renderPeople();
    renderLobby();
    demo.joined = call.state === "Connected" && (!call.localVideoStreams.length || call.isLocalVideoStarted);
    if (call.state === "Disconnected") showEnded(call);
  };
  connectedAt = 0;
  call.on("stateChanged", update);
  call.on("isMutedChanged", update);
  call.on("isLocalVideoStartedChanged", update);
  call.on("localVideoStreamsUpdated", update);
  call.on("idChanged", update);
  call.on("roleChanged", () => {
    toast(`Your role is now ${call.role}.`, "info");
    update();
  });
  call.on("mutedByOthers", () => toast("A presenter muted you. Unmute when you want to speak.", "info"));
  call.on("mediaError", ({ kind, error }) => toast(`Could not start the ${kind}: ${error.message}`, "error"));
  call.lobby.on("lobbyParticipantsUpdated", ({ added }) => {
    renderLobby();
    if (added.length && $("lobby-panel").hidden && canAdmit(call)) {
      const who = added.length === 1 ? `${nameOf(added[0])} is` : `${added.length} people are`;
      toast(`${who} waiting in the lobby.`, "info", 8000, { label: "Show", run: () => showPanel("lobby") }).dataset.about = "lobby";
    }
  });
  call.on("remoteParticipantsUpdated", ({ added, removed }) => {
    for (const p of added) participantTile(p);
    for (const p of removed) {
      const t = tiles.get(p);
      t?.dispose();
      tiles.delete(p);
      // In a 1:1 call the end of the call says it.
      if (call.state === "Connected" && ctx?.kind !== "direct" && ctx?.kind !== "incoming") toast(`${nameOf(p)} left`, "info", 3000);
    }
    layout();
  });
  clearInterval(clock);
  clock = setInterval(() => {
    if (demo.call !== call) return;
    if (call.state === "Connected") renderHeader(call);
    if (call.state === "InLobby") renderWaitingMeta();
    if (!$("lobby-panel").hidden) renderLobbyTimes();
  }, 1000);
  update();
}

/** Why a call ended, for people: a short phrase, a sentence, and whether it is an error. */
function endSummary(call) {
  const r = call.callEndReason ?? { name: "Unknown", message: "" };
  const peer = ctx?.peerName;
  const table = {
    HungUp: hungUpHere ? ["you left", "You left the call."] : ctx?.kind === "direct" || ctx?.kind === "incoming" ? ["hung up", `${peer ?? "The other side"} hung up.`] : ["ended", "The call ended."],
    Left: ["you left", "You left the call."],
    Declined: ["declined", peer ? `${peer} declined the call.` : "The call was declined."],
    Cancelled: ["cancelled", "The call was cancelled."],
    NoAnswer: ["no answer", peer ? `${peer} did not answer.` : "Nobody answered."],
    Unreachable: ["not reachable", "Nobody is online under that ID right now: no device of theirs is signed in."],
    RemovedFromCall: ["removed", "You were removed from the call."],
    RoomDeleted: ["room deleted", "The room was deleted."],
    TokenRevoked: ["signed out", "Your access token was revoked."],
    TokenExpired: ["token expired", "Your access token expired."],
    ConnectionLost: ["connection lost", "The connection to the server was lost."],
    ServerShutdown: ["server stopped", "The server is restarting. Try again in a moment."],
    NotAParticipant: ["not invited", "You are not a participant of this room."],
    RoomNotValidNow: ["room closed", "This room is not open at this time."],
    RoomNotFound: ["no such room", "There is no room with this ID."],
    CallNotFound: ["no such call", "There is no such call (a voip.join token cannot start one)."],
    AnsweredElsewhere: ["answered elsewhere", "Answered on another device."],
    CallEnded: ["already over", "The call was already over."],
    LobbyRejected: ["not admitted", "Someone in the meeting turned down your request to join.", "You were not let in"],
    LobbyTimeout: ["nobody let you in", "You waited in the lobby, but nobody in the meeting admitted you in time.", "Nobody let you in"],
    MeetingNotFound: ["no such meeting", "No meeting has this ID or link. It may have been deleted."],
    WrongPasscode: ["wrong passcode", "The passcode does not match this meeting's."],
  };
  if (ctx?.kind === "meeting") {
    table.RoomDeleted = ["meeting deleted", "The meeting was deleted."];
    // Leaving before anyone let you in.
    if (waitingSince && !connectedAt && (r.name === "Left" || r.name === "HungUp")) table[r.name] = ["you left", "You left the lobby before anyone let you in.", "You left the lobby"];
  }
  const [short, long, title] = table[r.name] ?? [r.name, r.message || r.name];
  const calm = new Set(["HungUp", "Left", "Declined", "Cancelled", "NoAnswer", "Unreachable", "AnsweredElsewhere", "CallEnded", "LobbyTimeout"]);
  return { short, long, title, error: !calm.has(r.name) };
}

/** Meeting joins the server refused outright: said on the join form, where they can be fixed. */
function meetingRefusal(reason) {
  switch (reason?.name) {
    case "WrongPasscode":
      return ["That passcode is not right for this meeting. Check it and try again.", "meeting-passcode"];
    case "MeetingNotFound":
      return ctx?.link ? ["No meeting has this link. Check it, or ask for a new one.", "meeting-link"] : ["No meeting has this ID. Check the 12 digits (and the passcode).", "meeting-id"];
    case "RateLimited":
      return ["Too many wrong meeting IDs or passcodes from here. Wait a minute, then try again.", ctx?.link ? "meeting-link" : "meeting-passcode"];
    case "BadRequest":
      return [`The server did not take that: ${reason.message}`, ctx?.link ? "meeting-link" : "meeting-id"];
    default:
      return null;
  }
}

function showEnded(call) {
  if (demo.call !== call) return;
  const summary = endSummary(call);
  demo.endReason = call.callEndReason?.name ?? null;
  demo.call = null;
  demo.joined = false;
  clearInterval(clock);
  stopWaitingPreview();
  for (const t of tiles.values()) t.dispose();
  tiles = new Map();
  renderLobby();
  // A meeting that refused the ID, link or passcode: back to the form, which says what to fix.
  const refusal = ctx?.kind === "meeting" && !waitingSince && !connectedAt ? meetingRefusal(call.callEndReason) : null;
  if (refusal) {
    showScreen("lobby");
    selectTab("meeting");
    meetingError(...refusal);
    startPreview();
    return;
  }
  // A call that never connected: say what happened instead of "ended".
  const title = summary.title ?? (connectedAt ? (summary.error ? "The call was interrupted" : "Call ended") : summary.error ? "Could not join" : summary.short[0].toUpperCase() + summary.short.slice(1));
  $("ended-title").textContent = title;
  const lasted = connectedAt ? Math.floor((Date.now() - connectedAt) / 1000) : 0;
  const waited = !connectedAt && waitingSince ? Math.floor((Date.now() - waitingSince) / 1000) : 0;
  $("ended-detail").textContent = lasted ? `${summary.long} It lasted ${mmss(lasted)}.` : call.callEndReason?.name === "LobbyTimeout" && waitingSince ? `${summary.long} You waited ${mmss(waited)}.` : summary.long;
  $("ended").querySelector(".ended-card").classList.toggle("error", summary.error);
  $("ended").querySelector(".ended-card").setAttribute("role", summary.error ? "alert" : "status");
  $("again").textContent = ctx?.kind === "meeting" && !connectedAt ? "Ask again" : ctx?.kind === "group" || ctx?.kind === "room" || ctx?.kind === "meeting" ? "Rejoin" : ctx?.kind === "incoming" ? "Call back" : "Call again";
  // Trying again cannot help when the server said no for good.
  const final = ["NotAParticipant", "RoomNotFound", "RoomDeleted", "RemovedFromCall", "BadRequest", "TokenRevoked", "TokenExpired", "TokenInvalid", "CallNotFound", "LobbyRejected", "MeetingNotFound"];
  $("again").hidden = final.includes(call.callEndReason?.name);
  showScreen("ended");
}

$("mic").onclick = async () => {
  const call = demo.call;
  if (!call) return;
  want.mic = call.isMuted;
  if (call.isMuted) await call.unmute();
  else await call.mute();
};
$("cam").onclick = async () => {
  const call = demo.call;
  if (!call || !localVideoStream) return;
  $("cam").disabled = true;
  try {
    if (call.isLocalVideoStarted) {
      want.cam = false;
      await call.stopVideo(localVideoStream);
    } else {
      want.cam = true;
      await call.startVideo(localVideoStream);
    }
  } catch (e) {
    toast(`Camera: ${e.message}`, "error");
  } finally {
    $("cam").disabled = false;
  }
};
$("leave").onclick = async () => {
  hungUpHere = true;
  await demo.call?.hangUp().catch((e) => toast(e.message, "error"));
};
/** The side panel: "people", "lobby" or none (null). */
function showPanel(which) {
  $("people").hidden = which !== "people";
  $("lobby-panel").hidden = which !== "lobby";
  $("people-button").setAttribute("aria-pressed", String(which === "people"));
  $("lobby-button").setAttribute("aria-pressed", String(which === "lobby"));
  if (which === "lobby") {
    renderLobby();
    // The notices that someone waits have done their job.
    for (const t of document.querySelectorAll('.toast[data-about="lobby"]')) t.remove();
  }
  if (demo.screen === "incall") layout();
}
$("people-button").onclick = () => showPanel($("people").hidden ? "people" : null);
$("people-close").onclick = () => showPanel(null);
$("lobby-button").onclick = () => showPanel($("lobby-panel").hidden ? "lobby" : null);
$("lobby-close").onclick = () => showPanel(null);
$("copy-invite").onclick = () => ctx && copy(inviteLink(ctx.kind, ctx.id), "Invite link");
$("toggle-diagnostics").onclick = () => {
  const on = !document.body.classList.contains("diagnostics");
  document.body.classList.toggle("diagnostics", on);
  $("toggle-diagnostics").setAttribute("aria-pressed", String(on));
};
$("back").onclick = () => {
  showScreen("lobby");
  startPreview();
};
$("again").onclick = () => {
  if (!ctx || !demo.callAgent) return;
  const again = ctx.kind === "incoming" ? { kind: "direct", id: ctx.id, peerName: ctx.peerName } : ctx;
  if (again.kind === "group") startMeeting(again, () => demo.callAgent.join({ groupId: again.id }, callOptions()));
  else if (again.kind === "meeting") startMeeting(again, () => demo.callAgent.join(again.link ? { meetingLink: again.link } : { meetingId: again.meetingId, passcode: again.passcode }, callOptions()));
  else if (again.kind === "room") startMeeting(again, () => demo.callAgent.join({ roomId: again.id }, callOptions()));
  else startMeeting(again, () => demo.callAgent.startCall([{ communicationUserId: again.id }], callOptions()));
};

new ResizeObserver(() => {
  if (demo.screen === "incall") layout();
}).observe($("stage"));

// Once a second, with diagnostics on: layer, resolution and bitrate on each tile.
setInterval(async () => {
  if (!document.body.classList.contains("diagnostics") || !demo.call) return;
  for (const t of tiles.values()) {
    if (t.self || !t.stream?.getStats) continue;
    const s = await t.stream.getStats();
    const info = t.figure.querySelector(".diag .info");
    if (!s) {
      info.textContent = "no video";
      continue;
    }
    // The server reports layer switches; before the first one the resolution says it.
    const layer = s.layer === null || s.layer === undefined ? "" : `layer ${LAYERS[s.layer] ?? s.layer} · `;
    const asked = s.requested.preferredLayer !== undefined ? `held at ${LAYERS[s.requested.preferredLayer]}` : s.requested.maxHeight ? `tile wants ≤${s.requested.maxHeight}p` : "no cap";
    info.textContent = `${layer}${s.frameWidth}×${s.frameHeight} · ${Math.round(s.bitrate / 1000)} kbit/s · ${asked}`;
  }
}, 1000);

// ---- start ------------------------------------------------------------------------------------

showScreen("lobby");
// Sign in with the token this tab had (or the address gives) right away, beside the device set-up:
// read it now, so a sign-in the user starts meanwhile is not replaced by a second agent.
const startToken = params.get("token") ?? sessionStorage.getItem("sb-token");
if (startToken) signIn(startToken);
devicesReady = initDevices().catch((e) => toast(`Devices: ${e.message}`, "error"));
