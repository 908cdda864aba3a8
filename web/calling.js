// Switchboard's browser SDK in the shape of the Azure Communication Services Calling SDK
// (@azure/communication-calling and the credential of @azure/communication-common): an ACS web
// app ports by changing its import lines. Plain ES module, no dependencies, no build step; it is
// built on the low-level client in ./switchboard.js (the protocol is docs/PROTOCOL.md).
//
//   import { CallClient, LocalVideoStream, VideoStreamRenderer,
//            AzureCommunicationTokenCredential } from "https://HOST/calling.js";
//   const callClient = new CallClient();
//   const callAgent = await callClient.createCallAgent(new AzureCommunicationTokenCredential(token), { displayName: "Ada" });
//   const call = callAgent.join({ groupId }, { audioOptions: { muted: false } });
//   const call = callAgent.join({ meetingLink }, options);   // a meeting: may wait 'InLobby'
//   call.lobby.on("lobbyParticipantsUpdated", ({ added }) => added.forEach((p) => call.lobby.admit(p.identifier)));
//
// What is not here: hold/resume, screen sharing from this API, Teams interop (meetings are
// Switchboard's own, joined with the ACS locator shapes), `feature(...)`.
// Switchboard additions are marked "Switchboard extension" below.

import { Switchboard, SwitchboardError } from "./switchboard.js";

export { SwitchboardError };

/** Where the signaling endpoint is: the server this module was loaded from. */
function defaultSignalingUrl() {
  const u = new URL("/signal", import.meta.url);
  u.protocol = u.protocol === "http:" ? "ws:" : "wss:";
  return u.toString();
}

// ---- small helpers ------------------------------------------------------------------------------

/** `on`/`off` events in the ACS style: handlers get one event object (or nothing). */
class Emitter {
  constructor() {
    Object.defineProperty(this, "_handlers", { value: new Map(), enumerable: false });
  }
  on(event, handler) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(handler);
  }
  off(event, handler) {
    this._handlers.get(event)?.delete(handler);
  }
  _emit(event, arg) {
    for (const handler of [...(this._handlers.get(event) ?? [])]) {
      try {
        handler(arg);
      } catch (e) {
        console.error(`calling.js: a '${event}' handler threw`, e);
      }
    }
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- identifiers (@azure/communication-common) ----------------------------------------------

/** `{communicationUserId: "8:acs:..."}` for a raw ID. */
export function createIdentifierFromRawId(rawId) {
  return { kind: "communicationUser", communicationUserId: rawId };
}

export function isCommunicationUserIdentifier(identifier) {
  return typeof identifier?.communicationUserId === "string";
}

export function getIdentifierRawId(identifier) {
  return identifier?.communicationUserId ?? identifier?.rawId;
}

// ---- tokens -------------------------------------------------------------------------------------

/** A token's expiry (ms since the epoch), from its JWT `exp`. */
function parseToken(token) {
  if (typeof token !== "string" || token.split(".").length !== 3) {
    throw new TypeError("not an access token (a JWT with three parts was expected)");
  }
  let claims;
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    claims = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch {
    throw new TypeError("not an access token (its claims do not decode)");
  }
  if (typeof claims.exp !== "number") throw new TypeError("not an access token (no exp claim)");
  return { token, expiresOnTimestamp: claims.exp * 1000 };
}

/** Refresh a token this long before it expires. */
const EXPIRING_SOON_MS = 10 * 60_000;

/**
 * The credential of @azure/communication-common: a static token, or a `tokenRefresher` that
 * fetches a new one (proactively, before expiry, with `refreshProactively`).
 */
export class AzureCommunicationTokenCredential {
  /** @param {string | {tokenRefresher: (abortSignal?: AbortSignal) => Promise<string>, token?: string, refreshProactively?: boolean}} tokenOrOptions */
  constructor(tokenOrOptions) {
    this._disposed = false;
    this._timer = null;
    this._refreshing = null;
    if (typeof tokenOrOptions === "string") {
      this._current = parseToken(tokenOrOptions);
      this._refresher = null;
      return;
    }
    const { tokenRefresher, token, refreshProactively = false } = tokenOrOptions ?? {};
    if (typeof tokenRefresher !== "function") throw new TypeError("tokenRefresher must be a function");
    this._refresher = tokenRefresher;
    this._proactive = refreshProactively;
    this._current = token ? parseToken(token) : null;
    if (this._proactive) {
      if (this._current) this._schedule();
      else this._refresh().catch(() => {});
    }
  }

  /** `{token, expiresOnTimestamp}`; refreshed first when it expires within 10 minutes. */
  async getToken(options = {}) {
    if (this._disposed) throw new Error("the credential was disposed");
    if (!this._refresher) return this._current;
    if (!this._current || this._current.expiresOnTimestamp - Date.now() < EXPIRING_SOON_MS) {
      return this._refresh(options.abortSignal);
    }
    return this._current;
  }

  /** Get a new token from the refresher now (Switchboard extension; used to renew registrations). */
  async _refresh(abortSignal) {
    if (!this._refresher) return this._current;
    this._refreshing ??= (async () => {
      try {
        const token = await this._refresher(abortSignal);
        this._current = parseToken(token);
        if (this._proactive) this._schedule();
        return this._current;
      } finally {
        this._refreshing = null;
      }
    })();
    return this._refreshing;
  }

  _schedule() {
    clearTimeout(this._timer);
    if (this._disposed) return;
    const left = this._current.expiresOnTimestamp - Date.now();
    // Ten minutes early, or half-way for a token that lives less than twenty minutes.
    const wait = left > 2 * EXPIRING_SOON_MS ? left - EXPIRING_SOON_MS : Math.max(1000, left / 2);
    this._timer = setTimeout(() => this._refresh().catch((e) => console.warn("calling.js: token refresh failed", e)), Math.min(wait, 2 ** 31 - 1));
  }

  dispose() {
    this._disposed = true;
    clearTimeout(this._timer);
  }
}

// ---- call end reasons ---------------------------------------------------------------------------

/**
 * The protocol's end codes as ACS `{code, subCode}` (from the ACS "calling end codes and
 * subcodes" table); `name` keeps the protocol's code and `message` its text.
 */
const END_CODES = {
  Left: [0, 0],
  HungUp: [0, 0],
  ConnectionLost: [410, 301005],
  Declined: [603, 0],
  Cancelled: [487, 0],
  NoAnswer: [487, 10004],
  Unreachable: [480, 10037],
  AnsweredElsewhere: [487, 10003],
  RemovedFromCall: [0, 5300],
  RoomDeleted: [0, 4097],
  TokenRevoked: [401, 10009],
  TokenExpired: [495, 4507],
  NotKeepingUp: [410, 3101],
  ServerShutdown: [503, 0],
  RegisterTimeout: [408, 0],
  // Request errors that end a call before it starts (join, startCall, accept).
  CallNotFound: [404, 0],
  CallEnded: [487, 0],
  NotAParticipant: [403, 5828],
  RoomNotValidNow: [403, 5829],
  RoomNotFound: [404, 0],
  TokenInvalid: [401, 10009],
  TokenScopeInsufficient: [403, 0],
  NotAllowed: [403, 0],
  NotRegistered: [401, 0],
  AlreadyJoined: [400, 0],
  BadRequest: [400, 0],
  RoomFull: [403, 0],
  LimitExceeded: [503, 0],
  RateLimited: [429, 0],
  // Meetings. ACS documents no subcodes for these outside Teams interop: codes only.
  LobbyRejected: [403, 0],
  LobbyTimeout: [408, 0],
  MeetingNotFound: [404, 0],
  WrongPasscode: [403, 0],
  InLobby: [400, 0],
  ServiceUnavailable: [503, 0],
  InternalError: [500, 0],
  Disconnected: [490, 4502],
  ConnectionFailed: [490, 4502],
  Timeout: [408, 0],
};

/** `{code, subCode, name, message}` for a protocol end code or error code. */
export function callEndReasonFor(name, message) {
  const [code, subCode] = END_CODES[name] ?? [500, 0];
  return { code, subCode, name: name ?? "Unknown", message: message ?? name ?? "" };
}

// ---- devices ------------------------------------------------------------------------------------

function videoDeviceInfo(d, i) {
  return { id: d.deviceId, name: d.label || `Camera ${i + 1}`, deviceType: "UsbCamera" };
}

function audioDeviceInfo(d, i, type) {
  return {
    id: d.deviceId,
    name: d.label || `${type} ${i + 1}`,
    deviceType: type,
    isSystemDefault: d.deviceId === "default",
  };
}

/** Cameras, microphones and speakers, and which ones calls use. */
export class DeviceManager extends Emitter {
  constructor() {
    super();
    this._selectedMicrophone = undefined;
    this._selectedSpeaker = undefined;
    this._known = { video: [], audio: [] };
    this._calls = new Set(); // calls that send the microphone (to switch it)
    navigator.mediaDevices?.addEventListener?.("devicechange", () => this._onDeviceChange());
  }

  get isSpeakerSelectionAvailable() {
    return typeof HTMLMediaElement !== "undefined" && "setSinkId" in HTMLMediaElement.prototype;
  }

  get selectedMicrophone() {
    return this._selectedMicrophone;
  }

  get selectedSpeaker() {
    return this._selectedSpeaker;
  }

  async _devices(kind) {
    const all = (await navigator.mediaDevices?.enumerateDevices?.()) ?? [];
    return all.filter((d) => d.kind === kind && d.deviceId);
  }

  async getCameras() {
    return (await this._devices("videoinput")).map(videoDeviceInfo);
  }

  async getMicrophones() {
    return (await this._devices("audioinput")).map((d, i) => audioDeviceInfo(d, i, "Microphone"));
  }

  async getSpeakers() {
    return (await this._devices("audiooutput")).map((d, i) => audioDeviceInfo(d, i, "Speaker"));
  }

  /** Ask for camera/microphone access; `{audio, video}` says what was granted. */
  async askDevicePermission({ audio = false, video = false } = {}) {
    const granted = { audio: false, video: false };
    const tryGet = async (constraints) => {
      try {
        const s = await navigator.mediaDevices.getUserMedia(constraints);
        for (const t of s.getTracks()) t.stop();
        return true;
      } catch {
        return false;
      }
    };
    if (audio && video && (await tryGet({ audio: true, video: true }))) {
      granted.audio = granted.video = true;
    } else {
      if (audio) granted.audio = await tryGet({ audio: true });
      if (video) granted.video = await tryGet({ video: true });
    }
    await this._onDeviceChange();
    return granted;
  }

  /** The microphone calls send; switching it during a call changes what the call sends. */
  async selectMicrophone(microphone) {
    this._selectedMicrophone = microphone;
    this._emit("selectedMicrophoneChanged");
    for (const call of this._calls) await call._switchMicrophone().catch((e) => console.warn("calling.js: microphone switch failed", e));
  }

  /** The speaker calls play to (where the browser supports choosing one). */
  async selectSpeaker(speaker) {
    this._selectedSpeaker = speaker;
    this._emit("selectedSpeakerChanged");
    for (const call of this._calls) call._applySpeaker();
  }

  /** A new microphone track (Switchboard internal). */
  async _openMicrophone() {
    const id = this._selectedMicrophone?.id;
    const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    if (id && id !== "default") audio.deviceId = { exact: id };
    const stream = await navigator.mediaDevices.getUserMedia({ audio });
    return stream.getAudioTracks()[0];
  }

  async _onDeviceChange() {
    const diff = (before, after) => ({
      added: after.filter((a) => !before.some((b) => b.id === a.id)),
      removed: before.filter((b) => !after.some((a) => a.id === b.id)),
    });
    const video = await this.getCameras();
    const audio = [...(await this.getMicrophones()), ...(await this.getSpeakers())];
    const v = diff(this._known.video, video);
    const a = diff(this._known.audio, audio);
    this._known = { video, audio };
    if (v.added.length || v.removed.length) this._emit("videoDevicesUpdated", v);
    if (a.added.length || a.removed.length) this._emit("audioDevicesUpdated", a);
  }
}

/** A camera (or any MediaStream) to preview and to send in calls. */
export class LocalVideoStream extends Emitter {
  /** @param {{id: string, name?: string} | MediaStream} source a camera from getCameras(), or a MediaStream */
  constructor(source) {
    super();
    if (!source) throw new TypeError("LocalVideoStream needs a camera (from deviceManager.getCameras()) or a MediaStream");
    this._custom = typeof MediaStream !== "undefined" && source instanceof MediaStream ? source : null;
    this._source = this._custom ? this._describe(this._custom) : source;
    this._stream = this._custom;
    this._opening = null;
    this._users = new Set(); // calls and renderer views that need frames
  }

  get kind() {
    return "LocalVideoStream";
  }

  get source() {
    return this._source;
  }

  get mediaStreamType() {
    return "Video";
  }

  _describe(stream) {
    const t = stream.getVideoTracks()[0];
    return { id: t?.id ?? "custom", name: t?.label || "Custom video", deviceType: "Unknown" };
  }

  /** The MediaStream being captured (opening the camera if nothing uses it yet). */
  async getMediaStream() {
    return this._open();
  }

  /** Use another MediaStream as the source. */
  async setMediaStream(stream) {
    this._custom = stream;
    this._source = this._describe(stream);
    await this._replace(stream);
  }

  /** Use another camera: calls sending this stream and its previews switch over. */
  async switchSource(camera) {
    this._custom = null;
    this._source = camera;
    if (!this._stream) {
      this._emit("videoSourceChanged");
      return;
    }
    await this._replace(await this._capture());
  }

  async _replace(stream) {
    const old = this._stream;
    this._stream = stream;
    const track = stream.getVideoTracks()[0];
    for (const user of this._users) await user._onLocalVideoTrackChanged?.(this, track, stream);
    if (old && old !== stream && old !== this._custom) for (const t of old.getTracks()) t.stop();
    this._emit("videoSourceChanged");
  }

  async _capture() {
    const video = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
    if (this._source?.id) video.deviceId = { exact: this._source.id };
    return navigator.mediaDevices.getUserMedia({ video });
  }

  async _open() {
    if (this._stream && this._stream.getVideoTracks().some((t) => t.readyState === "live")) return this._stream;
    this._opening ??= this._capture()
      .then((s) => {
        this._stream = s;
        return s;
      })
      .finally(() => {
        this._opening = null;
      });
    return this._opening;
  }

  /** A user (a call, a preview) needs frames: open the camera; resolves with the track. */
  async _acquire(user) {
    this._users.add(user);
    const stream = await this._open();
    return stream.getVideoTracks()[0];
  }

  /** A user is done: the camera closes when nobody needs it (its light goes off). */
  _release(user) {
    this._users.delete(user);
    if (this._users.size === 0 && this._stream && !this._custom) {
      for (const t of this._stream.getTracks()) t.stop();
      this._stream = null;
    }
  }
}

// ---- rendering and layer choice -----------------------------------------------------------------

/** Accept a layer up to this much smaller than the rendered size (mild upscaling is invisible). */
const UPSCALE_TOLERANCE = 1.25;
/** Heights of the usual simulcast layers, for tracks whose layers do not declare theirs. */
const LADDER = [180, 360, 720, 1080, 1440, 2160];
/** Beyond two device pixels per CSS pixel, more video resolution is not worth its bitrate. */
const MAX_PIXEL_RATIO = 2;
/** Wait this long after a resize before asking the server for another layer. */
const RESIZE_DEBOUNCE_MS = 300;

/** The `maxHeight` to ask for when a video is shown `need` device pixels high. */
export function maxHeightFor(need, declaredHeights = []) {
  if (!(need > 0)) return undefined;
  const heights = declaredHeights.filter((h) => h > 0).sort((a, b) => a - b);
  const ladder = heights.length ? heights : LADDER;
  const fit = ladder.find((h) => h >= need / UPSCALE_TOLERANCE);
  // Bigger than every layer: no cap (the best layer the bandwidth allows).
  return fit ?? undefined;
}

const OBJECT_FIT = { Crop: "cover", Fit: "contain", Stretch: "fill" };

/** A view of a video stream: `target` is the element to put in the page. */
class VideoStreamRendererView {
  constructor(renderer, { scalingMode = "Crop", isMirrored = false } = {}) {
    this._renderer = renderer;
    this._scalingMode = scalingMode;
    this._isMirrored = isMirrored;
    this._disposed = false;
    const target = document.createElement("div");
    target.className = "sb-video-view";
    target.style.cssText = "position:relative;width:100%;height:100%;overflow:hidden";
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // audio plays separately
    video.style.cssText = "position:absolute;inset:0;width:100%;height:100%";
    target.append(video);
    this.target = target;
    this._video = video;
    this._apply();
    this._observer = new ResizeObserver(() => renderer._onViewResized(this));
    this._observer.observe(target);
    video.addEventListener("resize", () => renderer._onViewResized(this));
  }

  get scalingMode() {
    return this._scalingMode;
  }

  get isMirrored() {
    return this._isMirrored;
  }

  _apply() {
    this._video.style.objectFit = OBJECT_FIT[this._scalingMode] ?? "cover";
    this._video.style.transform = this._isMirrored ? "scaleX(-1)" : "";
  }

  async updateScalingMode(scalingMode) {
    this._scalingMode = scalingMode;
    this._apply();
    this._renderer._onViewResized(this);
  }

  /** Device pixels of video height this view shows (0 when not laid out). */
  _neededHeight() {
    const rect = this.target.getBoundingClientRect();
    if (!rect.width || !rect.height) return 0;
    const v = this._video;
    const aspect = v.videoWidth && v.videoHeight ? v.videoWidth / v.videoHeight : 16 / 9;
    const asWide = rect.width / aspect; // the video's height when it spans the width
    const shown = this._scalingMode === "Crop" ? Math.max(rect.height, asWide) : this._scalingMode === "Fit" ? Math.min(rect.height, asWide) : rect.height;
    return shown * Math.min(globalThis.devicePixelRatio || 1, MAX_PIXEL_RATIO);
  }

  _setStream(stream) {
    if (this._video.srcObject !== stream) this._video.srcObject = stream;
    if (stream) this._video.play?.().catch(() => {});
  }

  _setAvailable(available) {
    // A muted track must not leave its last frame frozen on screen.
    this.target.dataset.available = String(available);
    this._video.style.visibility = available ? "visible" : "hidden";
  }

  dispose() {
    if (this._disposed) return;
    this._disposed = true;
    this._observer.disconnect();
    this._video.srcObject = null;
    this.target.remove();
    this._renderer._onViewDisposed(this);
  }
}

/**
 * Renders a RemoteVideoStream or a LocalVideoStream. For a remote stream the simulcast layer
 * follows the rendered size: each view is observed, and the server is asked for the smallest
 * layer that fills it (`maxHeight` from its height in device pixels).
 */
export class VideoStreamRenderer {
  constructor(videoStream) {
    if (!(videoStream instanceof RemoteVideoStream) && !(videoStream instanceof LocalVideoStream)) {
      throw new TypeError("VideoStreamRenderer needs a RemoteVideoStream or a LocalVideoStream");
    }
    this._stream = videoStream;
    this._views = new Set();
    this._disposed = false;
  }

  /** The size of the video (its frames), or 0 × 0 before the first frame. */
  get size() {
    const v = [...this._views][0]?._video;
    return { width: v?.videoWidth ?? 0, height: v?.videoHeight ?? 0 };
  }

  /** @param {{scalingMode?: "Crop" | "Fit" | "Stretch", isMirrored?: boolean}} options */
  async createView(options = {}) {
    if (this._disposed) throw new Error("the renderer was disposed");
    const view = new VideoStreamRendererView(this, options);
    this._views.add(view);
    const s = this._stream;
    if (s instanceof LocalVideoStream) {
      const user = { _onLocalVideoTrackChanged: (_lvs, _track, stream) => view._setStream(stream) };
      view._localUser = user;
      try {
        await s._acquire(user);
        view._setStream(s._stream);
      } catch (e) {
        this._views.delete(view);
        s._release(user);
        throw e;
      }
      view._setAvailable(true);
    } else {
      s._addView(view);
    }
    return view;
  }

  _onViewResized(view) {
    if (this._stream instanceof RemoteVideoStream) this._stream._onViewResized(view);
  }

  _onViewDisposed(view) {
    this._views.delete(view);
    const s = this._stream;
    if (s instanceof LocalVideoStream) s._release(view._localUser);
    else s._removeView(view);
  }

  dispose() {
    this._disposed = true;
    for (const v of [...this._views]) v.dispose();
  }
}

// ---- remote participants and their streams ------------------------------------------------------

/** A video track of a remote participant: its camera ("Video") or screen ("ScreenSharing"). */
export class RemoteVideoStream extends Emitter {
  constructor(call, track) {
    super();
    this._call = call;
    this._track = track;
    this._available = !track.muted;
    this._receiving = false;
    this._views = new Set();
    this._sub = null; // {subscriptionId, stream}
    this._subscribing = null;
    this._mediaStream = null;
    this._wish = {}; // what the server was last asked for
    this._manualLayer = undefined;
    this._resizeTimer = null;
    this._fallbackTimer = null;
  }

  get kind() {
    return "RemoteVideoStream";
  }

  get id() {
    return this._track.trackId;
  }

  get mediaStreamType() {
    return this._track.source === "screen" ? "ScreenSharing" : "Video";
  }

  /** False while the sender has it muted (camera off): no frames come. */
  get isAvailable() {
    return this._available;
  }

  get isReceiving() {
    return this._receiving;
  }

  get size() {
    const v = [...this._views][0]?._video;
    return { width: v?.videoWidth ?? 0, height: v?.videoHeight ?? 0 };
  }

  /** The received MediaStream (subscribing if nothing renders it yet). */
  async getMediaStream() {
    await this._subscribe();
    if (this._mediaStream) return this._mediaStream;
    return new Promise((resolve) => {
      const check = () => {
        if (this._mediaStream) {
          this.off("_media", check);
          resolve(this._mediaStream);
        }
      };
      this.on("_media", check);
    });
  }

  /**
   * Switchboard extension: hold this stream at a simulcast layer (0 = lowest), or give
   * `undefined` to let the rendered size choose again.
   */
  async setPreferredLayer(layer) {
    this._manualLayer = layer;
    await this._sendWish();
  }

  /** Switchboard extension: what arrives (frameWidth, frameHeight, framesDecoded, bitrate, layer). */
  async getStats() {
    if (!this._sub) return null;
    const s = await this._call._sb?.subscriptionStats(this._sub.subscriptionId);
    return s && { ...s, requested: { ...this._wish } };
  }

  _setAvailable(available) {
    if (available === this._available) return;
    this._available = available;
    for (const v of this._views) v._setAvailable(available);
    this._emit("isAvailableChanged");
  }

  _addView(view) {
    this._views.add(view);
    view._setAvailable(this._available);
    if (this._mediaStream) view._setStream(this._mediaStream);
    // Subscribe once the view is laid out (its size picks the layer), or after a moment anyway.
    if (!this._sub && !this._subscribing) {
      clearTimeout(this._fallbackTimer);
      this._fallbackTimer = setTimeout(() => this._subscribe().catch(() => {}), 500);
    }
    this._onViewResized(view);
  }

  _removeView(view) {
    this._views.delete(view);
    if (this._views.size === 0) {
      clearTimeout(this._resizeTimer);
      clearTimeout(this._fallbackTimer);
      this._unsubscribe();
    }
  }

  _onViewResized() {
    if (!this._sub && !this._subscribing) {
      if (this._maxHeight() !== undefined || this._biggestNeed() > 0) this._subscribe().catch(() => {});
      return;
    }
    clearTimeout(this._resizeTimer);
    this._resizeTimer = setTimeout(() => this._sendWish().catch(() => {}), RESIZE_DEBOUNCE_MS);
  }

  _biggestNeed() {
    let need = 0;
    for (const v of this._views) need = Math.max(need, v._neededHeight());
    return need;
  }

  _maxHeight() {
    const declared = (this._track.layers ?? []).map((l) => l.height ?? 0);
    return maxHeightFor(this._biggestNeed(), declared);
  }

  _currentWish() {
    if (this._manualLayer !== undefined) return { preferredLayer: this._manualLayer };
    const maxHeight = this._maxHeight();
    return maxHeight === undefined ? {} : { maxHeight };
  }

  async _subscribe() {
    if (this._sub) return;
    if (this._subscribing) return this._subscribing;
    clearTimeout(this._fallbackTimer);
    const sb = this._call._sb;
    if (!sb) return;
    const wish = this._currentWish();
    this._subscribing = (async () => {
      try {
        const sub = await sb.subscribe(this.id, wish);
        this._wish = wish;
        this._sub = { subscriptionId: sub.subscriptionId };
        this._call._videoBySubscription.set(sub.subscriptionId, this);
        if (sub.stream) this._onMedia(sub.stream);
        if (this._views.size === 0) await this._unsubscribe();
        else await this._sendWish();
      } finally {
        this._subscribing = null;
      }
    })();
    return this._subscribing;
  }

  async _sendWish() {
    if (!this._sub) return;
    const wish = this._currentWish();
    if (wish.preferredLayer === this._wish.preferredLayer && wish.maxHeight === this._wish.maxHeight) return;
    this._wish = wish;
    await this._call._sb?.setPreferences(this._sub.subscriptionId, wish);
  }

  _onMedia(stream) {
    this._mediaStream = stream;
    for (const v of this._views) v._setStream(stream);
    if (!this._receiving) {
      this._receiving = true;
      this._emit("isReceivingChanged");
    }
    this._emit("_media");
  }

  async _unsubscribe() {
    const sub = this._sub;
    this._sub = null;
    this._wish = {};
    this._mediaStream = null;
    if (this._receiving) {
      this._receiving = false;
      this._emit("isReceivingChanged");
    }
    if (!sub) return;
    this._call._videoBySubscription.delete(sub.subscriptionId);
    await this._call._sb?.unsubscribe(sub.subscriptionId).catch(() => {});
  }

  /** The track is gone (unpublished, its participant left, the call ended). */
  _end() {
    clearTimeout(this._resizeTimer);
    clearTimeout(this._fallbackTimer);
    if (this._sub) this._call._videoBySubscription.delete(this._sub.subscriptionId);
    this._sub = null;
    this._setAvailable(false);
    for (const v of this._views) v._setStream(null);
  }
}

/** Someone else in the call. */
export class RemoteParticipant extends Emitter {
  constructor(call, { identity, displayName, participantId, role, state }) {
    super();
    this._call = call;
    this._participantId = participantId;
    this.identifier = createIdentifierFromRawId(identity);
    this._displayName = displayName;
    this._role = role ?? "Unknown";
    this._state = state;
    this._isMuted = true; // until an unmuted microphone track is published
    this._isSpeaking = false;
    this._audio = new Map(); // trackId -> muted
    this._videoStreams = [];
    this._waitingSince = undefined;
    this.callEndReason = undefined;
  }

  get kind() {
    return "RemoteParticipant";
  }

  /** Switchboard extension: since when it waits in the meeting's lobby (a Date), while 'InLobby'. */
  get waitingSince() {
    return this._waitingSince;
  }

  get displayName() {
    return this._displayName;
  }

  /** 'Idle' | 'Connecting' | 'Ringing' | 'InLobby' | 'Connected' | 'Disconnected' */
  get state() {
    return this._state;
  }

  get isMuted() {
    return this._isMuted;
  }

  get isSpeaking() {
    return this._isSpeaking;
  }

  get role() {
    return this._role;
  }

  get videoStreams() {
    return [...this._videoStreams];
  }

  /** Switchboard extension: the participant's ID in this call (as in the protocol). */
  get participantId() {
    return this._participantId;
  }

  /** Mute this participant's microphone (a presenter in a room may). */
  async mute() {
    if (this._participantId === undefined) throw new Error("the participant has not joined yet");
    await this._call._sb.muteParticipant(this._participantId);
  }

  _set(field, value, event) {
    if (this[field] === value) return;
    this[field] = value;
    this._emit(event);
  }

  _setState(state) {
    this._set("_state", state, "stateChanged");
  }

  _updateMuted() {
    const muted = this._audio.size === 0 || [...this._audio.values()].every((m) => m);
    this._set("_isMuted", muted, "isMutedChanged");
  }
}

// ---- the lobby of a meeting --------------------------------------------------------------------

/**
 * A meeting's lobby, as the ACS `Lobby` (`call.lobby`): who waits, and (for the organizer and
 * presenters) admitting and rejecting them. Others see it empty. Waiting people are
 * RemoteParticipants in state 'InLobby'; one who is admitted becomes, as the same object, a
 * 'Connected' member of `call.remoteParticipants`.
 */
export class Lobby extends Emitter {
  constructor(call) {
    super();
    this._call = call;
    this._waiting = new Map(); // participantId -> RemoteParticipant ('InLobby')
  }

  get kind() {
    return "Lobby";
  }

  /** Who waits now, oldest first (only the organizer and presenters are told). */
  get participants() {
    return [...this._waiting.values()];
  }

  /**
   * Let in a waiting identity: every device of it that waits. Switchboard also takes the
   * RemoteParticipant itself (then only that device).
   */
  async admit(identifier) {
    await this._call._sb.admitLobby(this._find(identifier));
  }

  /** Let everyone in. Resolves with ACS's `{successCount, failureCount}`: those waiting when asked. */
  async admitAll() {
    const successCount = this._waiting.size;
    await this._call._sb.admitLobby({ all: true });
    return { successCount, failureCount: 0 };
  }

  /** Turn a waiting identity away (its wait ends with `LobbyRejected`). */
  async reject(identifier) {
    await this._call._sb.rejectLobby(this._find(identifier));
  }

  _find(identifier) {
    if (identifier instanceof RemoteParticipant && this._waiting.has(identifier.participantId)) return [identifier.participantId];
    const raw = getIdentifierRawId(identifier instanceof RemoteParticipant ? identifier.identifier : identifier);
    const ids = this.participants.filter((p) => p.identifier.communicationUserId === raw).map((p) => p.participantId);
    if (!ids.length) throw new Error(`${raw} is not waiting in the lobby`);
    return ids;
  }

  /** `lobbyUpdated`: the whole list, oldest first. */
  _update(list) {
    const now = new Map();
    const added = [];
    for (const info of list) {
      let p = this._waiting.get(info.participantId);
      if (!p) {
        p = new RemoteParticipant(this._call, { ...info, state: "InLobby" });
        p._waitingSince = new Date(info.waitingSince);
        added.push(p);
      }
      now.set(info.participantId, p);
    }
    const removed = [...this._waiting.values()].filter((p) => !now.has(p.participantId));
    // One who leaves the lobby may show up as a member next (admitted): keep it to reuse.
    for (const p of removed) this._call._leftLobby.set(p.participantId, p);
    this._waiting = now;
    if (added.length || removed.length) this._emit("lobbyParticipantsUpdated", { added, removed });
  }

  _clear() {
    this._update([]);
  }
}

// ---- calls -------------------------------------------------------------------------------------

/** Labels the ACS call states use; the protocol's are a subset. */
const CALL_STATES = new Set(["None", "Connecting", "Ringing", "Connected", "LocalHold", "RemoteHold", "InLobby", "EarlyMedia", "Disconnecting", "Disconnected"]);

/** A call this device takes part in (started, joined or accepted). */
/** ACS `DtmfTone` names → the characters `RTCDTMFSender` sends. */
const DTMF_KEYS = {
  Num0: "0", Num1: "1", Num2: "2", Num3: "3", Num4: "4", Num5: "5", Num6: "6", Num7: "7", Num8: "8", Num9: "9",
  Star: "*", Pound: "#", A: "A", B: "B", C: "C", D: "D",
};
/** How long each tone lasts and the pause after it (ms; RTCDTMFSender's defaults). */
const DTMF_TONE_MS = 100;
const DTMF_GAP_MS = 70;

export class Call extends Emitter {
  constructor(agent, { direction, callerInfo, options = {}, targets = [] }) {
    super();
    this._agent = agent;
    this._sb = agent._sb;
    this._id = `pending:${crypto.randomUUID()}`;
    this._state = "None";
    this._direction = direction;
    this._callerInfo = callerInfo;
    this._role = "Unknown";
    this._capabilities = { publish: ["microphone", "camera", "screen"], receive: true, moderate: false };
    this._muted = !!options.audioOptions?.muted;
    this._incomingMuted = false;
    this._localVideoStreams = [...(options.videoOptions?.localVideoStreams ?? [])];
    this._videoStarted = false;
    this._participants = [];
    this._byPid = new Map();
    this._lobby = new Lobby(this);
    this._leftLobby = new Map(); // participantId -> RemoteParticipant that left the lobby (admitted, or not)
    this._videoBySubscription = new Map(); // subscriptionId -> RemoteVideoStream
    this._audioBySubscription = new Map(); // subscriptionId -> HTMLAudioElement
    this._audioTrack = null; // {trackId, track}
    this._videoPub = null; // {trackId, lvs}
    this._speaking = new Set();
    this._hangUpWhenJoined = null;
    this._ended = false;
    this._listeners = [];
    this.callEndReason = undefined;
    for (const identity of targets) {
      this._addParticipant(new RemoteParticipant(this, { identity, state: "Connecting" }), false);
    }
  }

  get kind() {
    return "Call";
  }

  get id() {
    return this._id;
  }

  /** 'None' | 'Connecting' | 'Ringing' | 'Connected' | 'InLobby' | 'Disconnecting' | 'Disconnected' */
  get state() {
    return this._state;
  }

  get direction() {
    return this._direction;
  }

  get callerInfo() {
    return this._callerInfo;
  }

  get role() {
    return this._role;
  }

  get isMuted() {
    return this._muted;
  }

  get isIncomingAudioMuted() {
    return this._incomingMuted;
  }

  get isLocalVideoStarted() {
    return this._videoStarted;
  }

  get isScreenSharingOn() {
    return false;
  }

  get localVideoStreams() {
    return [...this._localVideoStreams];
  }

  get localAudioStreams() {
    return [];
  }

  get remoteParticipants() {
    return this._participants.filter((p) => p.state !== "Disconnected");
  }

  /** A meeting's lobby (ACS `call.lobby`): empty in other calls, and for whoever cannot admit. */
  get lobby() {
    return this._lobby;
  }

  get totalParticipantCount() {
    return this.remoteParticipants.filter((p) => p.state === "Connected").length + (this._state === "Connected" ? 1 : 0);
  }

  /** Switchboard extension: this device's participant ID in the call. */
  get participantId() {
    return this._sb?.participantId ?? null;
  }

  /**
   * Switchboard extension: what this participant may do, from its role:
   * `{publish: ["microphone", "camera", "screen"], receive, moderate}`.
   */
  get capabilities() {
    return this._capabilities;
  }

  _may(source) {
    return this._capabilities.publish?.includes(source) ?? true;
  }

  /** Remove someone from the call (a presenter in a room may). */
  async removeParticipant(identifier) {
    const raw = getIdentifierRawId(identifier);
    const p = this._participants.find((x) => x.identifier.communicationUserId === raw && x.participantId !== undefined);
    if (!p) throw new Error(`${raw} is not in this call`);
    await this._sb.removeParticipant(p.participantId);
  }

  /** Mute everyone else (a presenter in a room may). */
  async muteAllRemoteParticipants() {
    for (const p of this.remoteParticipants) if (p.participantId !== undefined && !p.isMuted) await p.mute();
  }

  feature() {
    throw new Error("call features are not available in Switchboard's calling.js");
  }

  async hold() {
    throw new Error("hold is not supported by Switchboard");
  }

  async resume() {
    throw new Error("hold is not supported by Switchboard");
  }

  _setState(state) {
    if (!CALL_STATES.has(state) || state === this._state || this._ended) return;
    this._state = state;
    this._emit("stateChanged");
    if (state === "Ringing") for (const p of this._participants) if (p.state === "Connecting" && p.participantId === undefined) p._setState("Ringing");
  }

  // -- entering ---------------------------------------------------------------------------------

  /** Run the request that puts this device in the call (join, startCall, acceptCall). */
  async _enter(request) {
    this._setState("Connecting");
    let joined;
    try {
      this._sb = await this._agent._sessionForCall();
      if (this._ended) return;
      this._wire();
      joined = await request();
    } catch (e) {
      this._end(callEndReasonFor(e.code ?? "InternalError", e.detail ?? e.message));
      throw e;
    }
    if (this._ended) return;
    this._id = joined.callId ?? joined.room ?? this._id;
    this._emit("idChanged");
    if (this._hangUpWhenJoined) {
      const options = this._hangUpWhenJoined;
      this._hangUpWhenJoined = null;
      await this.hangUp(options);
      return;
    }
    if (joined.state === "InLobby") {
      // Waiting: no role, no capabilities, nobody, nothing sent. mute()/startVideo() now only
      // choose what is sent once admitted (`admitted` below).
      this._setState("InLobby");
      return;
    }
    this._role = joined.role ?? "Unknown";
    if (joined.capabilities) this._capabilities = joined.capabilities;
    for (const p of joined.participants) this._onParticipantJoined(p);
    this._setState(joined.state === "Connecting" ? "Connecting" : joined.state);
    this._publishLocalMedia(joined.capabilities).catch((e) => this._emit("mediaError", { kind: "publish", error: e }));
  }

  /** Let in from the lobby: the role, who is there, then 'Connected', then our media. */
  _onAdmitted(msg) {
    if (this._state !== "InLobby") return;
    this._role = msg.role ?? "Unknown";
    if (msg.capabilities) this._capabilities = msg.capabilities;
    for (const p of msg.participants) this._onParticipantJoined(p);
    this._setState("Connected");
    this._publishLocalMedia(msg.capabilities).catch((e) => this._emit("mediaError", { kind: "publish", error: e }));
  }

  _wire() {
    const sb = this._sb;
    const on = (type, fn) => {
      const h = (e) => {
        if (!this._ended) fn(e.detail);
      };
      sb.addEventListener(type, h);
      this._listeners.push([type, h]);
    };
    on("participantJoined", (p) => this._onParticipantJoined(p));
    on("participantLeft", (m) => this._onParticipantLeft(m));
    on("trackPublished", (t) => this._onTrackPublished(t));
    on("trackUnpublished", (m) => this._onTrackUnpublished(m));
    on("trackMuted", (m) => this._onTrackMuted(m));
    on("roleChanged", (m) => this._onRoleChanged(m));
    on("activeSpeakers", (s) => this._onSpeakers(s));
    on("track", (t) => this._onTrack(t));
    on("lobbyUpdated", (list) => this._lobby._update(list));
    on("admitted", (m) => this._onAdmitted(m));
    on("callStateChanged", (m) => {
      if (m.state === "Disconnected") this._end(callEndReasonFor(m.code ?? "HungUp", m.reason));
      // Admission: 'Connected' once `admitted` has said the role and who is there.
      else if (!(m.state === "Connected" && this._state === "InLobby")) this._setState(m.state);
    });
  }

  _unwire() {
    for (const [type, h] of this._listeners) this._sb?.removeEventListener(type, h);
    this._listeners = [];
  }

  async _publishLocalMedia(capabilities) {
    const allowed = capabilities?.publish ?? ["microphone", "camera", "screen"];
    const items = [];
    if (allowed.includes("microphone")) {
      try {
        const track = await this._agent._deviceManager._openMicrophone();
        track.enabled = !this._muted;
        this._audioTrack = { track, trackId: null };
        items.push({ track, source: "microphone", muted: this._muted });
      } catch (e) {
        this._emit("mediaError", { kind: "microphone", error: e });
        this._setMuted(true);
      }
    } else {
      this._setMuted(true);
    }
    const lvs = this._localVideoStreams[0];
    if (lvs && allowed.includes("camera")) {
      try {
        const track = await lvs._acquire(this);
        items.push({ track, source: "camera", lvs });
      } catch (e) {
        this._emit("mediaError", { kind: "camera", error: e });
        this._dropLocalVideo(lvs);
      }
    } else if (lvs) {
      this._dropLocalVideo(lvs);
    }
    if (this._ended) return this._releaseLocal();
    if (items.length === 0) return;
    const published = await this._sb.publishTracks(items);
    if (this._ended) return;
    this._agent._deviceManager._calls.add(this);
    items.forEach((item, n) => {
      if (item.source === "microphone") this._audioTrack.trackId = published[n].trackId;
      else {
        this._videoPub = { trackId: published[n].trackId, lvs: item.lvs };
        this._setVideoStarted(true);
      }
    });
  }

  _dropLocalVideo(lvs) {
    const i = this._localVideoStreams.indexOf(lvs);
    if (i < 0) return;
    this._localVideoStreams.splice(i, 1);
    this._emit("localVideoStreamsUpdated", { added: [], removed: [lvs] });
  }

  _setVideoStarted(on) {
    if (this._videoStarted === on) return;
    this._videoStarted = on;
    this._emit("isLocalVideoStartedChanged");
  }

  _setMuted(muted) {
    if (this._muted === muted) return;
    this._muted = muted;
    this._emit("isMutedChanged");
  }

  // -- what the server says ---------------------------------------------------------------------

  _addParticipant(p, announce = true) {
    this._participants.push(p);
    if (announce) this._emit("remoteParticipantsUpdated", { added: [p], removed: [] });
  }

  _onParticipantJoined(info) {
    if (info.participantId === this._sb.participantId) return;
    // A callee we rang, or someone we saw in the lobby: the same RemoteParticipant becomes connected.
    const waited = this._lobby._waiting.get(info.participantId) ?? this._leftLobby.get(info.participantId);
    if (waited) {
      this._leftLobby.delete(info.participantId);
      if (this._lobby._waiting.delete(info.participantId)) this._lobby._emit("lobbyParticipantsUpdated", { added: [], removed: [waited] });
      waited._waitingSince = undefined;
      if (info.role) waited._role = info.role;
      if (info.displayName) waited._displayName = info.displayName;
      this._byPid.set(info.participantId, waited);
      this._addParticipant(waited, false);
      waited._setState("Connected");
      this._emit("remoteParticipantsUpdated", { added: [waited], removed: [] });
      for (const t of info.tracks ?? []) this._onTrackPublished(t);
      return;
    }
    let p = this._participants.find((x) => x.participantId === undefined && x.identifier.communicationUserId === info.identity && x.state !== "Disconnected");
    if (p) {
      p._participantId = info.participantId;
      p._displayName = info.displayName ?? p._displayName;
      if (info.role) p._role = info.role;
      this._byPid.set(info.participantId, p);
      p._setState("Connected");
      p._emit("displayNameChanged");
    } else {
      p = new RemoteParticipant(this, { ...info, state: "Connected" });
      this._byPid.set(info.participantId, p);
      this._addParticipant(p);
    }
    for (const t of info.tracks ?? []) this._onTrackPublished(t);
  }

  _onParticipantLeft({ participantId, code, reason }) {
    const p = this._byPid.get(participantId);
    if (!p) return;
    this._byPid.delete(participantId);
    for (const s of p._videoStreams) s._end();
    const removed = p._videoStreams;
    p._videoStreams = [];
    if (removed.length) p._emit("videoStreamsUpdated", { added: [], removed });
    p.callEndReason = callEndReasonFor(code ?? "Left", reason);
    p._setState("Disconnected");
    this._participants = this._participants.filter((x) => x !== p);
    this._emit("remoteParticipantsUpdated", { added: [], removed: [p] });
  }

  _onTrackPublished(track) {
    if (track.participantId === this._sb.participantId) return;
    const p = this._byPid.get(track.participantId);
    if (!p) return;
    if (track.kind === "audio") {
      p._audio.set(track.trackId, !!track.muted);
      p._updateMuted();
      this._sb.subscribe(track.trackId).catch((e) => console.warn("calling.js: audio subscription failed", e));
      return;
    }
    if (p._videoStreams.some((s) => s.id === track.trackId)) return;
    const stream = new RemoteVideoStream(this, track);
    p._videoStreams.push(stream);
    p._emit("videoStreamsUpdated", { added: [stream], removed: [] });
  }

  _onTrackUnpublished({ trackId, participantId }) {
    if (participantId === this._sb.participantId) {
      // Our own track, stopped by the server (a role change).
      if (this._audioTrack?.trackId === trackId) {
        this._audioTrack.track.stop();
        this._audioTrack = null;
        this._setMuted(true);
      }
      if (this._videoPub?.trackId === trackId) {
        const lvs = this._videoPub.lvs;
        this._videoPub = null;
        lvs?._release(this);
        if (lvs) this._dropLocalVideo(lvs);
        this._setVideoStarted(false);
      }
      return;
    }
    const p = this._byPid.get(participantId);
    if (!p) return;
    if (p._audio.delete(trackId)) {
      for (const [sid, el] of this._audioBySubscription) {
        if (el._trackId === trackId) {
          el.srcObject = null;
          this._audioBySubscription.delete(sid);
        }
      }
      p._updateMuted();
      return;
    }
    const stream = p._videoStreams.find((s) => s.id === trackId);
    if (!stream) return;
    stream._end();
    p._videoStreams = p._videoStreams.filter((s) => s !== stream);
    p._emit("videoStreamsUpdated", { added: [], removed: [stream] });
  }

  _onTrackMuted({ trackId, participantId, muted, by }) {
    if (participantId === this._sb.participantId) {
      // A presenter muted us: stop sending, and say so.
      if (by !== undefined && by !== null && this._audioTrack?.trackId === trackId) {
        if (this._audioTrack.track) this._audioTrack.track.enabled = !muted;
        this._setMuted(muted);
        if (muted) this._emit("mutedByOthers");
      }
      return;
    }
    const p = this._byPid.get(participantId);
    if (!p) return;
    if (p._audio.has(trackId)) {
      p._audio.set(trackId, muted);
      p._updateMuted();
      return;
    }
    p._videoStreams.find((s) => s.id === trackId)?._setAvailable(!muted);
  }

  _onRoleChanged({ participantId, role, capabilities }) {
    if (participantId === this._sb.participantId) {
      this._role = role;
      if (capabilities) this._capabilities = capabilities;
      this._emit("roleChanged");
      // An upgrade that allows the microphone again: send it, muted.
      if (capabilities?.publish?.includes("microphone") && !this._audioTrack) {
        this._muted = true;
        this._publishLocalMedia({ publish: ["microphone"] }).catch((e) => this._emit("mediaError", { kind: "publish", error: e }));
      }
      return;
    }
    const p = this._byPid.get(participantId);
    if (p) p._set("_role", role, "roleChanged");
  }

  _onSpeakers(speakers) {
    const now = new Set(speakers.map((s) => s.participantId));
    for (const p of this._participants) {
      if (p.participantId === undefined) continue;
      p._set("_isSpeaking", now.has(p.participantId), "isSpeakingChanged");
    }
    this._speaking = now;
  }

  _onTrack({ subscriptionId, kind, stream, trackId }) {
    if (kind === "audio") {
      const el = new Audio();
      el.autoplay = true;
      el._trackId = trackId;
      el.srcObject = stream;
      el.muted = this._incomingMuted;
      const speaker = this._agent._deviceManager.selectedSpeaker;
      if (speaker && el.setSinkId) el.setSinkId(speaker.id).catch(() => {});
      el.play().catch(() => {});
      this._audioBySubscription.set(subscriptionId, el);
      return;
    }
    this._videoBySubscription.get(subscriptionId)?._onMedia(stream);
  }

  _applySpeaker() {
    const speaker = this._agent._deviceManager.selectedSpeaker;
    for (const el of this._audioBySubscription.values()) if (speaker && el.setSinkId) el.setSinkId(speaker.id).catch(() => {});
  }

  // -- what the user does -----------------------------------------------------------------------

  async mute() {
    await this._applyMute(true);
  }

  async unmute() {
    await this._applyMute(false);
  }

  async _applyMute(muted) {
    if (!muted && !this._may("microphone")) throw new Error(`NotAllowed: the role ${this._role} cannot send audio`);
    if (this._audioTrack?.trackId) await this._sb.setMuted(this._audioTrack.trackId, muted);
    else if (this._audioTrack?.track) this._audioTrack.track.enabled = !muted;
    this._setMuted(muted);
  }

  async muteIncomingAudio() {
    this._incomingMuted = true;
    for (const el of this._audioBySubscription.values()) el.muted = true;
    this._emit("isIncomingAudioMutedChanged");
  }

  async unmuteIncomingAudio() {
    this._incomingMuted = false;
    for (const el of this._audioBySubscription.values()) el.muted = false;
    this._emit("isIncomingAudioMutedChanged");
  }

  /**
   * Send a DTMF tone (the ACS `DtmfTone` names: "Num0" to "Num9", "Star", "Pound", "A" to "D")
   * as an RFC 4733 telephone-event on the call's audio, which call automation recognizes.
   * Resolves once the tone has been sent; tones sent back to back queue.
   */
  async sendDtmf(dtmfTone) {
    const key = DTMF_KEYS[dtmfTone];
    if (!key) throw new Error(`InvalidArgument: ${dtmfTone} is not a DTMF tone (Num0-Num9, Star, Pound, A-D)`);
    const track = this._audioTrack?.track;
    const sender = track && this._sb?.pc?.getSenders().find((s) => s.track === track);
    const dtmf = sender?.dtmf;
    if (!dtmf?.canInsertDTMF) throw new Error("InvalidState: the call sends no audio that can carry DTMF");
    await new Promise((resolve) => {
      // The sender's tone buffer empties ("" tonechange) once this and earlier tones are out.
      const done = () => {
        clearTimeout(timer);
        dtmf.removeEventListener("tonechange", onTone);
        resolve();
      };
      const onTone = (e) => {
        if (e.tone === "") done();
      };
      const timer = setTimeout(done, 5_000);
      dtmf.addEventListener("tonechange", onTone);
      dtmf.insertDTMF(dtmf.toneBuffer + key, DTMF_TONE_MS, DTMF_GAP_MS);
    });
  }

  /** Send a camera (again). Before the call is connected it is sent once it is. */
  async startVideo(localVideoStream) {
    if (!(localVideoStream instanceof LocalVideoStream)) throw new TypeError("startVideo needs a LocalVideoStream");
    if (this._ended) throw new Error("the call has ended");
    if (this._sb.inCall && !this._may("camera")) throw new Error(`NotAllowed: the role ${this._role} cannot send video`);
    if (!this._localVideoStreams.includes(localVideoStream)) {
      this._localVideoStreams = [localVideoStream];
      this._emit("localVideoStreamsUpdated", { added: [localVideoStream], removed: [] });
    }
    if (this._sb.participantId === null || this._state === "InLobby" || (this._state === "Connecting" && !this._sb.inCall)) return; // sent once joined (admitted)
    const track = await localVideoStream._acquire(this);
    if (this._videoPub) {
      // The line of an earlier stopVideo: send on it again, and unmute it.
      if (this._videoPub.lvs && this._videoPub.lvs !== localVideoStream) this._videoPub.lvs._release(this);
      this._videoPub.lvs = localVideoStream;
      await this._sb.replaceTrack(this._videoPub.trackId, track);
      await this._sb.setMuted(this._videoPub.trackId, false);
    } else {
      const [published] = await this._sb.publishTracks([{ track, source: "camera" }]);
      this._videoPub = { trackId: published.trackId, lvs: localVideoStream };
    }
    this._setVideoStarted(true);
  }

  /**
   * Stop sending a camera: the line sends nothing and its track is muted, so the others see
   * the camera as off (RemoteVideoStream.isAvailable false), not a frozen frame.
   */
  async stopVideo(localVideoStream) {
    const i = this._localVideoStreams.indexOf(localVideoStream);
    if (i >= 0) {
      this._localVideoStreams.splice(i, 1);
      this._emit("localVideoStreamsUpdated", { added: [], removed: [localVideoStream] });
    }
    if (this._videoPub && this._videoPub.lvs === localVideoStream) {
      const { trackId } = this._videoPub;
      this._videoPub.lvs = null;
      await this._sb.replaceTrack(trackId, null).catch(() => {});
      await this._sb.setMuted(trackId, true).catch(() => {});
    }
    localVideoStream._release(this);
    this._setVideoStarted(false);
  }

  async _onLocalVideoTrackChanged(lvs, track) {
    if (this._videoPub?.lvs === lvs) await this._sb.replaceTrack(this._videoPub.trackId, track);
  }

  async _switchMicrophone() {
    if (!this._audioTrack?.trackId) return;
    const track = await this._agent._deviceManager._openMicrophone();
    track.enabled = !this._muted;
    const old = this._audioTrack.track;
    await this._sb.replaceTrack(this._audioTrack.trackId, track);
    this._audioTrack.track = track;
    old?.stop();
  }

  /** Leave the call; `{forEveryone: true}` ends it for all (1:1 calls; presenters in rooms). */
  async hangUp(options = {}) {
    if (this._ended) return;
    if (this._state === "Connecting" && !this._sb.inCall) {
      // Still joining: hang up as soon as the server has us in the call.
      this._hangUpWhenJoined = options;
      this._setState("Disconnecting");
      return;
    }
    this._setState("Disconnecting");
    try {
      await this._sb.hangUp({ forEveryone: !!options.forEveryone });
    } catch (e) {
      if (e.code === "NotAllowed") {
        this._setState("Connected");
        throw e;
      }
    }
    this._end(callEndReasonFor("HungUp", "you hung up"));
  }

  /** The call is over for this device. */
  _end(reason) {
    if (this._ended) return;
    this.callEndReason = reason;
    this._state = "Disconnected";
    this._ended = true;
    this._unwire();
    this._lobby._clear();
    this._leftLobby.clear();
    for (const p of this._participants) {
      for (const s of p._videoStreams) s._end();
      if (p.state !== "Disconnected") {
        p.callEndReason = reason;
        p._setState("Disconnected");
      }
    }
    for (const el of this._audioBySubscription.values()) el.srcObject = null;
    this._audioBySubscription.clear();
    this._releaseLocal();
    this._agent._deviceManager._calls.delete(this);
    this._emit("stateChanged");
    this._agent._callEnded(this);
  }

  _releaseLocal() {
    this._audioTrack?.track?.stop();
    this._audioTrack = null;
    for (const lvs of this._localVideoStreams) lvs._release(this);
    this._videoPub?.lvs?._release(this);
    this._videoPub = null;
    this._setVideoStarted(false);
  }
}

/** A call ringing on this device. */
export class IncomingCall extends Emitter {
  constructor(agent, { callId, caller }) {
    super();
    this._agent = agent;
    this.id = callId;
    this.callerInfo = { identifier: createIdentifierFromRawId(caller.identity), displayName: caller.displayName };
    this.callEndReason = undefined;
    this._ended = false;
  }

  get kind() {
    return "IncomingCall";
  }

  /** Answer; resolves with the Call. Fails (e.g. AnsweredElsewhere) when another device was first. */
  async accept(options = {}) {
    const agent = this._agent;
    const call = agent._newCall({ direction: "Incoming", callerInfo: this.callerInfo, options });
    try {
      await call._enter(() => agent._sb.acceptCall(this.id));
    } catch (e) {
      if (!this._ended) this._end(callEndReasonFor(e.code, e.detail ?? e.message));
      throw e;
    }
    agent._incoming.delete(this.id);
    this._ended = true;
    return call;
  }

  /** Decline: the call stops ringing on every device of this identity. */
  async reject() {
    await this._agent._sb.rejectCall(this.id);
    this._end(callEndReasonFor("Declined", "you declined"));
  }

  _end(reason) {
    if (this._ended) return;
    this._ended = true;
    this.callEndReason = reason;
    this._agent._incoming.delete(this.id);
    this._emit("callEnded", { callEndReason: reason });
  }
}

// ---- the agent ----------------------------------------------------------------------------------

/** Renew a registration this long before its token expires. */
const RENEW_BEFORE_EXPIRY_MS = 5 * 60_000;
const RECONNECT_DELAYS_MS = [1000, 2000, 5000, 10_000, 30_000];

/**
 * This device, registered with the server as a device of the credential's identity: it can be
 * called (`incomingCall`), start calls and join them. The registration is kept alive with fresh
 * tokens from the credential, and the connection comes back after a network loss.
 */
export class CallAgent extends Emitter {
  constructor(callClient, credential, options = {}) {
    super();
    this._client = callClient;
    this._credential = credential;
    this._displayName = options.displayName;
    this._deviceManager = callClient._deviceManager;
    this._settings = { ...callClient._settings, ...(options.switchboard ?? {}) };
    this._calls = [];
    this._incoming = new Map();
    this._sb = null;
    this._state = "Disconnected";
    this._identity = undefined;
    this._expiresOn = undefined;
    this._renewTimer = null;
    this._disposed = false;
    this._fatal = null;
    this._registrations = 0;
  }

  get kind() {
    return "CallAgent";
  }

  get calls() {
    return [...this._calls];
  }

  get displayName() {
    return this._displayName;
  }

  /** 'Connected' | 'Disconnected' */
  get connectionState() {
    return this._state;
  }

  /** Switchboard extension: the identity this device is registered as ("8:acs:..."). */
  get identifier() {
    return this._identity && createIdentifierFromRawId(this._identity);
  }

  /** Switchboard extension: when the registration's token expires (ms since the epoch). */
  get registrationExpiresOn() {
    return this._expiresOn;
  }

  async _connect() {
    this._sb = await this._openSession();
    this._setConnectionState("Connected");
  }

  /** A new signaling session, registered as a device of this identity. */
  async _openSession() {
    const sb = new Switchboard({ url: this._settings.url ?? defaultSignalingUrl(), iceServers: this._settings.iceServers });
    await sb.connect();
    sb.addEventListener("incomingCall", (e) => this._onIncomingCall(e.detail));
    sb.addEventListener("incomingCallEnded", (e) => {
      this._incoming.get(e.detail.callId)?._end(callEndReasonFor(e.detail.code, e.detail.reason));
    });
    sb.addEventListener("callStateChanged", (e) => {
      if (sb === this._sb && e.detail.state === "Disconnected" && ["TokenRevoked", "TokenExpired", "ServerShutdown", "NotKeepingUp"].includes(e.detail.code)) {
        this._fatal = e.detail.code;
      }
    });
    sb.addEventListener("disconnected", (e) => this._onDisconnected(sb, e.detail));
    try {
      await this._register(undefined, sb);
    } catch (e) {
      sb.close();
      throw e;
    }
    return sb;
  }

  /**
   * The session a new call runs on: this device's one signaling session (each call gets its own
   * peer connection on it).
   */
  async _sessionForCall() {
    if (!this._sb) throw Object.assign(new Error("the call agent is not connected"), { code: "Disconnected" });
    return this._sb;
  }

  /** Switchboard extension: the name shown to people this device calls or meets from now on. */
  async setDisplayName(displayName) {
    this._displayName = displayName;
    if (this._sb?.connected) await this._register({ token: this._registeredToken });
  }

  async _register(token, sb = this._sb) {
    const t = token ?? (await this._credential.getToken());
    const r = await sb.register({ token: t.token, displayName: this._displayName });
    this._identity = r.identity;
    this._expiresOn = r.expiresOn * 1000;
    this._registeredToken = t.token;
    this._registrations++;
    this._scheduleRenewal();
    this._emit("registrationRenewed");
    return r;
  }

  _scheduleRenewal() {
    clearTimeout(this._renewTimer);
    const margin = this._settings.renewBeforeExpiryMs ?? RENEW_BEFORE_EXPIRY_MS;
    const wait = Math.max(1000, this._expiresOn - Date.now() - margin);
    this._renewTimer = setTimeout(() => this._renew(), Math.min(wait, 2 ** 31 - 1));
  }

  /** Register again with a newer token before the current one expires. */
  async _renew() {
    if (this._disposed || !this._sb?.connected) return;
    try {
      let t = await this._credential.getToken();
      if (t.token === this._registeredToken && typeof this._credential._refresh === "function") t = await this._credential._refresh();
      if (!t || t.token === this._registeredToken) {
        console.warn("calling.js: the credential gave no newer token; the registration ends when its token expires");
        return;
      }
      await this._register(t);
    } catch (e) {
      console.warn("calling.js: renewing the registration failed; trying again in 30 s", e);
      this._renewTimer = setTimeout(() => this._renew(), 30_000);
    }
  }

  _setConnectionState(state, reason) {
    if (state === this._state) return;
    const oldValue = this._state;
    this._state = state;
    this._emit("connectionStateChanged", { newValue: state, oldValue, reason });
  }

  async _onDisconnected(sb, detail) {
    if (sb !== this._sb) return;
    clearTimeout(this._renewTimer);
    const reason = this._fatal ?? "ConnectionLost";
    for (const call of [...this._calls]) call._end(callEndReasonFor(reason, detail.reason || "the connection to the server was lost"));
    for (const ic of [...this._incoming.values()]) ic._end(callEndReasonFor(reason, "the connection to the server was lost"));
    this._sb = null;
    this._setConnectionState("Disconnected", reason);
    if (this._disposed || this._fatal === "TokenRevoked") return;
    // Come back: new connection, new registration (calls in progress are over).
    for (let attempt = 0; !this._disposed; attempt++) {
      await sleep(RECONNECT_DELAYS_MS[Math.min(attempt, RECONNECT_DELAYS_MS.length - 1)]);
      if (this._disposed) return;
      try {
        this._fatal = null;
        await this._connect();
        return;
      } catch (e) {
        if (["TokenExpired", "TokenInvalid", "TokenRevoked"].includes(e.code) && !this._credential._refresher) {
          console.warn("calling.js: cannot register again:", e.message);
          return;
        }
      }
    }
  }

  _onIncomingCall(msg) {
    // A call rings a device once; a repeated notice (e.g. after a reconnect) is the same call.
    if (this._incoming.has(msg.callId)) return;
    const incomingCall = new IncomingCall(this, msg);
    this._incoming.set(msg.callId, incomingCall);
    this._emit("incomingCall", { incomingCall });
  }

  _newCall(init) {
    if (!this._sb) throw new Error("the call agent is not connected");
    const call = new Call(this, init);
    this._calls.push(call);
    this._emit("callsUpdated", { added: [call], removed: [] });
    return call;
  }

  _callEnded(call) {
    const before = this._calls.length;
    this._calls = this._calls.filter((c) => c !== call);
    if (this._calls.length !== before) this._emit("callsUpdated", { added: [], removed: [call] });
  }

  /**
   * Call people: `participants` are `{communicationUserId}`; the Call starts as 'Connecting',
   * rings ('Ringing') and is 'Connected' when someone answers.
   */
  startCall(participants, options = {}) {
    const targets = participants.map((p) => getIdentifierRawId(p)).filter(Boolean);
    if (targets.length === 0) throw new TypeError("startCall needs at least one {communicationUserId}");
    const call = this._newCall({ direction: "Outgoing", options, targets });
    call._enter(() => this._sb.startCall(targets)).catch(() => {});
    return call;
  }

  /**
   * Join a group call `{groupId}`, an ACS Room `{roomId}`, a meeting by link `{meetingLink}`
   * (ACS TeamsMeetingLinkLocator) or by ID and passcode `{meetingId, passcode}` (ACS
   * TeamsMeetingIdLocator), or a 1:1 call again (`{callId}`, Switchboard extension). A meeting
   * may keep the call 'InLobby' until someone admits it.
   */
  join(locator, options = {}) {
    const { groupId, roomId, callId, meetingLink, meetingId, passcode } = locator ?? {};
    const request = groupId
      ? { groupId }
      : roomId
        ? { roomId }
        : meetingLink
          ? { meetingLink }
          : meetingId
            ? { meetingId: String(meetingId).replace(/\s+/g, ""), passcode: passcode || undefined }
            : callId
              ? { callId }
              : null;
    if (!request) throw new TypeError("join needs {groupId}, {roomId}, {meetingLink} or {meetingId, passcode}");
    const call = this._newCall({ direction: "Outgoing", options });
    call._enter(() => this._sb.join(request)).catch(() => {});
    return call;
  }

  /** Hang up, unregister and close the connection. */
  async dispose() {
    this._disposed = true;
    clearTimeout(this._renewTimer);
    for (const call of [...this._calls]) await call.hangUp().catch(() => {});
    const sb = this._sb;
    this._sb = null;
    sb?.close();
    this._setConnectionState("Disconnected");
  }
}

/** The entry point: device access and call agents. */
export class CallClient {
  /**
   * @param {{switchboard?: {url?: string, iceServers?: RTCIceServer[]}}} options `switchboard` is
   *   a Switchboard extension: the signaling URL (default: the server this module came from).
   */
  constructor(options = {}) {
    this._settings = { ...(options.switchboard ?? {}) };
    this._deviceManager = new DeviceManager();
  }

  async getDeviceManager() {
    return this._deviceManager;
  }

  /** Connect and register this device; resolves once registered (fails on a bad token). */
  async createCallAgent(tokenCredential, options = {}) {
    const agent = new CallAgent(this, tokenCredential, options);
    await agent._connect();
    return agent;
  }

  feature() {
    throw new Error("call client features are not available in Switchboard's calling.js");
  }
}
