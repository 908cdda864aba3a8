// Switchboard browser client, the low level: one signaling WebSocket and one RTCPeerConnection
// per device, the messages of docs/PROTOCOL.md as methods and events. Most pages want the
// ACS-shaped API in /calling.js, which is built on this.
//
//   import { Switchboard } from "/switchboard.js";
//   const sb = new Switchboard();                       // wss://<this host>/signal
//   await sb.connect();
//   await sb.register({ token, displayName: "Ada" });   // a device: it can be called now
//   sb.addEventListener("incomingCall", (e) => sb.acceptCall(e.detail.callId));
//   await sb.join({ groupId });                          // or { roomId }, startCall([identity])
//   await sb.join({ meetingId, passcode });              // or { meetingLink }: state "InLobby"
//   sb.addEventListener("admitted", () => sb.publish()); //   until someone admits this device
//   await sb.publish();                                  // camera + microphone, simulcast q/h/f
//   sb.addEventListener("track", (e) => video.srcObject = e.detail.stream);
//   sb.autoSubscribe = true;                             // subscribe to every track published
//
// The connection (a registered device) outlives calls; each call has its own RTCPeerConnection.
// When a call ends the server closes its side of the peer, so this client closes its own and the
// next call negotiates a fresh one (new ICE and DTLS) on the same WebSocket.

/** Simulcast layers, lowest first (the server expects this order). */
export const SIMULCAST_LAYERS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 2_000_000 },
];

/** How long a signaling request may wait for its answer before it fails with `Timeout`. */
const REQUEST_TIMEOUT_MS = 15000;
/** An ICE connection "disconnected" this long (its network went away) is restarted (default). */
const ICE_RESTART_AFTER_MS = 4000;
/** At most one ICE restart this often while the network stays away. */
const ICE_RESTART_SPACING_MS = 3000;

export class SwitchboardError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
  }
}

export class Switchboard extends EventTarget {
  /**
   * @param {{url?: string, autoSubscribe?: boolean, iceServers?: RTCIceServer[], iceRestartAfterMs?: number}} options
   * `iceRestartAfterMs`: how long an ICE connection may stay "disconnected" before it is
   * restarted (default 4000; a "failed" one is restarted at once).
   */
  constructor(options = {}) {
    super();
    this.iceRestartAfterMs = options.iceRestartAfterMs ?? ICE_RESTART_AFTER_MS;
    this.url = options.url ?? `wss://${location.host}/signal`;
    this.autoSubscribe = options.autoSubscribe ?? false;
    this.iceServers = options.iceServers ?? [];
    this.ws = null;
    this.pc = null;
    this.nextId = 1;
    this.pending = new Map(); // request id -> {resolve, reject, type}
    /** Our offer was sent and its answer has not arrived yet. */
    this.offerAwaitingAnswer = false;
    /** Offers we have sent (server offers received before the latest one are withdrawn). */
    this.offersSent = 0;
    /** The newest server offerId we answered on this peer connection. */
    this.lastAnsweredOffer = 0;
    this.negotiating = Promise.resolve();
    /** The registration: {identity, expiresOn (unix seconds)} once registered. */
    this.registration = null;
    this.localStream = null;
    this.resetCall();
  }

  /** Forget everything about the current call (the device stays registered). */
  resetCall() {
    this.participantId = null;
    this.callId = null;
    this.inCall = false;
    /** Waiting in a meeting's lobby: no peer connection, nothing sent or received. */
    this.inLobby = false;
    /** (Organizers and presenters of a meeting) who waits in its lobby, from `lobbyUpdated`. */
    this.lobby = [];
    this.joinedInfo = null;
    this.participants = new Map(); // participantId -> participant info
    this.tracks = new Map(); // trackId -> track info (others')
    this.published = new Map(); // mid -> {trackId, kind, source, track, transceiver}
    this.subscriptions = new Map(); // subscriptionId -> {trackId, streamId, kind, stream, receiver, layer}
    this.byStream = new Map(); // streamId -> subscriptionId
    this.orphans = new Map(); // streamId -> track event that arrived before its `subscribed`
  }

  /** Open the signaling WebSocket. */
  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      let open = false;
      let keepalive = null;
      ws.onopen = () => {
        open = true;
        // Keep idle sockets alive through proxies and NATs (docs/PROTOCOL.md): a ping every 20 s.
        keepalive = setInterval(() => {
          if (this.ws === ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ping" }));
        }, 20000);
        resolve();
      };
      ws.onerror = () => {
        if (!open) reject(new SwitchboardError("ConnectionFailed", `cannot reach ${this.url}`));
      };
      ws.onclose = (e) => {
        clearInterval(keepalive);
        for (const p of this.pending.values()) p.reject(new SwitchboardError("Disconnected", "signaling closed"));
        this.pending.clear();
        this.offerAwaitingAnswer = false;
        if (this.ws === ws) this.ws = null;
        this.emit("disconnected", { code: e.code, reason: e.reason });
      };
      ws.onmessage = (e) => {
        let msg;
        try {
          msg = JSON.parse(e.data);
        } catch {
          return;
        }
        this.onMessage(msg);
      };
      this.ws = ws;
    });
  }

  get connected() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  request(message) {
    if (!this.connected) return Promise.reject(new SwitchboardError("Disconnected", "signaling is not connected"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      // Every request settles: with its answer, with an `error` carrying its id, or after
      // REQUEST_TIMEOUT_MS with a Timeout error (a lost answer never leaves a caller waiting).
      const timer = setTimeout(() => {
        if (message.type === "offer") this.offerAwaitingAnswer = false;
        if (this.pending.delete(id)) reject(new SwitchboardError("Timeout", `no answer to ${message.type} within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      const settle = (fn) => (value) => {
        clearTimeout(timer);
        fn(value);
      };
      this.pending.set(id, { resolve: settle(resolve), reject: settle(reject), type: message.type });
      // Glare bookkeeping (docs/PROTOCOL.md): our offer awaits its answer from now on, and any
      // server offer received but not answered yet is withdrawn by the server when ours arrives.
      if (message.type === "offer") {
        this.offerAwaitingAnswer = true;
        this.offersSent++;
      }
      if (globalThis.SWITCHBOARD_DEBUG) console.debug("switchboard >", JSON.stringify({ ...message, id, sdp: message.sdp && `${message.sdp.length} bytes` }));
      this.ws.send(JSON.stringify({ ...message, id }));
    });
  }

  onMessage(msg) {
    // Set globalThis.SWITCHBOARD_DEBUG = true to see the signaling in the console.
    if (globalThis.SWITCHBOARD_DEBUG) console.debug("switchboard <", JSON.stringify({ ...msg, sdp: msg.sdp && summarizeSdp(msg.sdp) }));
    if (msg.id !== undefined && msg.id !== null && this.pending.has(msg.id)) {
      const { resolve, reject, type } = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      // Our offer's answer (or refusal) has arrived: server offers from here on are new ones.
      if (type === "offer") this.offerAwaitingAnswer = false;
      if (msg.type === "error") reject(new SwitchboardError(msg.code, msg.message));
      else resolve(msg);
      if (msg.type === "published") this.onPublished(msg);
      return;
    }
    switch (msg.type) {
      case "participantJoined":
        this.addParticipant(msg.participant);
        this.emit("participantJoined", msg.participant);
        break;
      case "participantLeft":
        for (const [id, t] of this.tracks) if (t.participantId === msg.participantId) this.dropTrack(id);
        this.participants.delete(msg.participantId);
        this.emit("participantLeft", msg);
        break;
      case "trackPublished":
        this.addTrack(msg.track);
        break;
      case "trackUnpublished":
        if (msg.participantId === this.participantId) {
          // The server stopped our track (a role change): its line must not be offered as sending.
          for (const [mid, p] of this.published) {
            if (p.trackId !== msg.trackId) continue;
            this.published.delete(mid);
            this.retire(p.transceiver);
          }
        }
        this.dropTrack(msg.trackId);
        this.emit("trackUnpublished", msg);
        break;
      case "trackMuted": {
        const t = this.tracks.get(msg.trackId);
        if (t) t.muted = msg.muted;
        for (const p of this.published.values()) if (p.trackId === msg.trackId) p.muted = msg.muted;
        this.emit("trackMuted", msg);
        break;
      }
      case "roleChanged": {
        const p = this.participants.get(msg.participantId);
        if (p) p.role = msg.role;
        if (msg.participantId === this.participantId && this.joinedInfo) {
          this.joinedInfo.role = msg.role;
          if (msg.capabilities) this.joinedInfo.capabilities = msg.capabilities;
        }
        this.emit("roleChanged", msg);
        break;
      }
      case "published":
        this.onPublished(msg);
        break;
      case "layerChanged": {
        const s = this.subscriptions.get(msg.subscriptionId);
        if (s) s.layer = msg.layer;
        this.emit("layerChanged", msg);
        break;
      }
      case "activeSpeakers":
        this.emit("activeSpeakers", msg.speakers);
        break;
      case "offer": {
        // Glare: an offer that arrives while ours awaits its answer crossed ours, and the server
        // has withdrawn it (it offers again after answering ours).
        if (this.offerAwaitingAnswer) break;
        const epoch = this.offersSent;
        this.enqueue(() => this.onServerOffer(msg.sdp, msg.offerId, epoch));
        break;
      }
      case "incomingCall":
        this.emit("incomingCall", msg);
        break;
      case "incomingCallEnded":
        this.emit("incomingCallEnded", msg);
        break;
      case "callStateChanged":
        if (msg.state === "Disconnected") this.endCall();
        this.emit("callStateChanged", msg);
        break;
      case "lobbyUpdated":
        this.lobby = msg.participants;
        this.emit("lobbyUpdated", msg.participants);
        break;
      case "admitted":
        this.onAdmitted(msg);
        break;
      case "error":
        this.emit("error", msg);
        break;
    }
  }

  onPublished(msg) {
    const t = this.pc?.getTransceivers().find((x) => x.mid === msg.mid);
    const entry = { trackId: msg.trackId, kind: msg.kind, mid: msg.mid, source: t?._sbSource, track: t?.sender.track, transceiver: t, muted: false };
    this.published.set(msg.mid, entry);
    this.emit("published", { ...msg, source: entry.source });
  }

  addParticipant(p) {
    this.participants.set(p.participantId, p);
    for (const t of p.tracks ?? []) this.addTrack(t);
  }

  addTrack(track) {
    if (track.participantId === this.participantId) return;
    this.tracks.set(track.trackId, track);
    this.emit("trackPublished", track);
    if (this.autoSubscribe) this.subscribe(track.trackId).catch((e) => this.emit("error", e));
  }

  dropTrack(trackId) {
    this.tracks.delete(trackId);
    for (const [id, s] of this.subscriptions) {
      if (s.trackId !== trackId) continue;
      this.subscriptions.delete(id);
      this.byStream.delete(s.streamId);
    }
  }

  // ---- registration and calls -------------------------------------------------------------

  /** Register this connection as a device of the token's identity (again: renew it). */
  async register({ token, displayName }) {
    const r = await this.request({ type: "register", token, displayName });
    this.registration = { identity: r.identity, expiresOn: r.expiresOn };
    return r;
  }

  /**
   * Join a group call, an ACS Room, a 1:1 call or a meeting: exactly one of groupId, roomId,
   * callId, meetingId (with passcode) or meetingLink. A meeting may answer `state: "InLobby"`:
   * then this device waits (nothing is negotiated) until an `admitted` event, or a
   * `callStateChanged` Disconnected (LobbyRejected, LobbyTimeout).
   */
  async join({ token, groupId, roomId, callId, meetingId, passcode, meetingLink, displayName }) {
    return this.entered(await this.request({ type: "join", token, groupId, roomId, callId, meetingId, passcode, meetingLink, displayName }));
  }

  /** Call identities (raw IDs, "8:acs:..."); resolves with `joined` (state "Connecting"). */
  async startCall(targets) {
    return this.entered(await this.request({ type: "startCall", targets }));
  }

  /** Answer a call ringing on this device. */
  async acceptCall(callId) {
    return this.entered(await this.request({ type: "acceptCall", callId }));
  }

  /** Decline a call ringing on this device (for every device of this identity). */
  rejectCall(callId) {
    return this.request({ type: "rejectCall", callId });
  }

  entered(joined) {
    this.resetCall();
    this.joinedInfo = joined;
    this.participantId = joined.participantId;
    this.callId = joined.callId ?? null;
    if (joined.state === "InLobby") {
      // The server negotiates nothing with a waiting session: no peer connection until admitted.
      this.inLobby = true;
      return joined;
    }
    this.inCall = true;
    this.ensurePeerConnection();
    for (const p of joined.participants) this.addParticipant(p);
    return joined;
  }

  /** Let in from the lobby: from here this device is in the call like any other. */
  onAdmitted(msg) {
    if (!this.inLobby) return;
    this.inLobby = false;
    this.inCall = true;
    this.participantId = msg.participantId;
    this.joinedInfo = { ...this.joinedInfo, state: "Connected", role: msg.role, capabilities: msg.capabilities, participants: msg.participants };
    this.ensurePeerConnection();
    for (const p of msg.participants) this.addParticipant(p);
    this.emit("admitted", msg);
  }

  /**
   * (A meeting's organizer and presenters) let people in from the lobby: `participantIds` (from
   * `lobbyUpdated`), or `{all: true}`. Those no longer waiting are skipped.
   */
  admitLobby(participantIds) {
    return this.request({ type: "admitLobby", ...lobbyTargets(participantIds) });
  }

  /** (A meeting's organizer and presenters) turn people away from the lobby (`LobbyRejected`). */
  rejectLobby(participantIds) {
    return this.request({ type: "rejectLobby", ...lobbyTargets(participantIds) });
  }

  /** The call ended for this device: its peer connection goes with it (the server closed its
   * side); the next call opens a new one. Local tracks stay with their owner. */
  endCall() {
    if (this.inLobby) return this.resetCall();
    if (!this.inCall) return;
    for (const p of this.published.values()) this.retire(p.transceiver);
    clearTimeout(this.iceTimer);
    this.pc?.close();
    this.pc = null;
    this.negotiating = Promise.resolve();
    this.resetCall();
  }

  retire(transceiver) {
    if (!transceiver || transceiver._sbRetired) return;
    transceiver._sbRetired = true;
    transceiver.sender.replaceTrack(null).catch(() => {});
    // Inactive in our next offer, so the server does not take the line for a new track.
    if (transceiver.direction !== "stopped") transceiver.direction = "inactive";
  }



  /** (Moderators) mute another participant's audio. */
  muteParticipant(participantId) {
    return this.request({ type: "muteParticipant", participantId });
  }

  /** (Moderators) remove another participant from the call. */
  removeParticipant(participantId) {
    return this.request({ type: "removeParticipant", participantId });
  }

  /** Leave the call; the device stays registered. */
  async leave() {
    try {
      await this.request({ type: "leave" });
    } catch {
      // not in a call, or already gone
    }
    this.endCall();
  }

  /** Leave the call; `forEveryone` ends it for all (a 1:1 party, or a room's presenter). */
  async hangUp({ forEveryone = false } = {}) {
    // On success the server has sent callStateChanged Disconnected (which ends the call here)
    // before its `ok`; a refused forEveryone leaves us in the call.
    await this.request({ type: "hangUp", forEveryone });
    this.endCall();
  }

  // ---- WebRTC ---------------------------------------------------------------------------------

  ensurePeerConnection() {
    if (this.pc) return this.pc;
    // The server is ICE-lite and announces its own candidates; no STUN/TURN needed on loopback
    // or a LAN. Pass iceServers through the constructor option if clients sit behind NAT.
    const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", iceServers: this.iceServers });
    // Offer IDs count per peer connection.
    this.lastAnsweredOffer = 0;
    pc.ontrack = (e) => {
      const stream = e.streams[0];
      if (globalThis.SWITCHBOARD_DEBUG) console.debug("switchboard track", e.transceiver.mid, e.track.kind, e.streams.map((s) => s.id).join(","));
      if (!stream) return;
      const subscriptionId = this.byStream.get(stream.id);
      if (subscriptionId === undefined) {
        this.orphans.set(stream.id, e);
        return;
      }
      this.deliver(subscriptionId, e);
    };
    pc.onconnectionstatechange = () => this.emit("connectionState", pc.connectionState);
    pc.oniceconnectionstatechange = () => this.onIceState(pc);
    this.pc = pc;
    return pc;
  }

  /**
   * The network went away (Wi-Fi to cellular, a tunnel): restart ICE when the connection
   * failed, or stayed "disconnected" for ICE_RESTART_AFTER_MS. The server keeps our place for
   * `[webrtc] reconnect_grace_seconds` after its side lost us (docs/PROTOCOL.md, "Reconnecting").
   */
  onIceState(pc) {
    if (pc !== this.pc) return;
    clearTimeout(this.iceTimer);
    const state = pc.iceConnectionState;
    if (state === "failed") this.restartIce(pc);
    else if (state === "disconnected") this.iceTimer = setTimeout(() => this.restartIce(pc), this.iceRestartAfterMs);
  }

  restartIce(pc) {
    if (pc !== this.pc || !this.inCall || !["failed", "disconnected"].includes(pc.iceConnectionState)) return;
    const wait = (this.lastIceRestart ?? 0) + ICE_RESTART_SPACING_MS - Date.now();
    if (wait > 0) {
      this.iceTimer = setTimeout(() => this.restartIce(pc), wait);
      return;
    }
    this.lastIceRestart = Date.now();
    this.iceRestarts = (this.iceRestarts ?? 0) + 1;
    this.emit("iceRestart", { count: this.iceRestarts });
    this.enqueue(() => (pc === this.pc ? this.negotiate({ iceRestart: true }) : undefined)).catch(() => {});
    // If this restart fails too, the state comes back to "failed" and we try again.
    this.iceTimer = setTimeout(() => this.onIceState(pc), ICE_RESTART_AFTER_MS + ICE_RESTART_SPACING_MS);
  }

  deliver(subscriptionId, e) {
    const sub = this.subscriptions.get(subscriptionId);
    if (!sub) return;
    sub.stream = e.streams[0];
    sub.receiver = e.receiver;
    this.emit("track", { ...sub, subscriptionId, track: e.track, stream: sub.stream, mid: e.transceiver.mid });
  }

  /** Serialize negotiations: one offer/answer exchange at a time. */
  enqueue(task) {
    const next = this.negotiating.then(task, task);
    this.negotiating = next.catch((e) => this.emit("error", e));
    return next;
  }

  /**
   * Apply a server offer and answer it (docs/PROTOCOL.md, "Glare"). `epoch`: how many offers we
   * had sent when it arrived; if we have sent one since, the server withdrew this offer.
   */
  async onServerOffer(sdp, offerId, epoch) {
    // The server offers only while this session is in the call the offer belongs to.
    if (!this.pc || !this.inCall) return;
    if (this.offersSent !== epoch) return;
    // A resend of an offer we answered already (the server resends an unanswered offer).
    if (offerId !== undefined && offerId <= this.lastAnsweredOffer) return;
    try {
      await this.pc.setRemoteDescription({ type: "offer", sdp });
      const answer = await this.pc.createAnswer();
      await this.pc.setLocalDescription(answer);
    } catch (e) {
      // Refuse it explicitly, so the server withdraws it and offers again.
      if (this.pc?.signalingState === "have-remote-offer") await this.pc.setLocalDescription({ type: "rollback" }).catch(() => {});
      if (offerId !== undefined) await this.request({ type: "rejectOffer", offerId, reason: String(e?.message ?? e).slice(0, 200) }).catch(() => {});
      throw e;
    }
    if (offerId !== undefined) this.lastAnsweredOffer = offerId;
    await this.request({ type: "answer", sdp: this.pc.localDescription.sdp, offerId });
  }

  async negotiate(options = {}) {
    const offer = await this.pc.createOffer(options);
    await this.pc.setLocalDescription(offer);
    // What each sending line carries, when it is not the kind's default.
    const sources = {};
    for (const t of this.pc.getTransceivers()) {
      if (t.mid !== null && t._sbSource === "screen" && !t._sbRetired) sources[t.mid] = "screen";
    }
    const message = { type: "offer", sdp: this.pc.localDescription.sdp };
    if (Object.keys(sources).length) message.sources = sources;
    const answer = await this.request(message);
    await this.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  }

  /**
   * Start sending tracks. Each item: {track, source?: "microphone"|"camera"|"screen",
   * simulcast?: boolean (video, default true for the camera), muted?: boolean}. Resolves with
   * one `published` ({trackId, mid, kind, codec, source}) per track, in the same order.
   */
  async publishTracks(items) {
    if (!this.inCall) throw new SwitchboardError("NotJoined", "join a call first");
    this.ensurePeerConnection();
    const transceivers = [];
    const waiting = new Map(); // mid -> resolve
    const results = new Map();
    const onPublished = (e) => {
      const w = waiting.get(e.detail.mid);
      if (w) w(e.detail);
    };
    this.addEventListener("published", onPublished);
    try {
      await this.enqueue(async () => {
        for (const item of items) {
          const kind = item.track.kind;
          const source = item.source ?? (kind === "audio" ? "microphone" : "camera");
          const simulcast = kind === "video" && (item.simulcast ?? source === "camera");
          item.track.contentHint = kind === "video" ? (source === "screen" ? "detail" : "motion") : "speech";
          const stream = item.stream ?? new MediaStream([item.track]);
          const init = { direction: "sendonly", streams: [stream] };
          if (simulcast) init.sendEncodings = SIMULCAST_LAYERS.map((l) => ({ ...l }));
          const t = this.pc.addTransceiver(item.track, init);
          t._sbSource = source;
          transceivers.push(t);
        }
        await this.negotiate();
        for (const t of transceivers) {
          if (this.published.has(t.mid)) results.set(t, this.published.get(t.mid));
          else results.set(t, new Promise((resolve) => waiting.set(t.mid, resolve)));
        }
      });
      const published = await Promise.all(transceivers.map((t) => withTimeout(results.get(t), 10_000, `media line ${t.mid} was not published`)));
      for (const [n, item] of items.entries()) {
        if (item.muted) await this.setMuted(published[n].trackId, true);
      }
      return published;
    } finally {
      this.removeEventListener("published", onPublished);
    }
  }

  /** The published track (by trackId) and its transceiver. */
  publication(trackId) {
    for (const p of this.published.values()) if (p.trackId === trackId) return p;
    return undefined;
  }

  /** Send another MediaStreamTrack (or nothing: null) on a published track's line. */
  async replaceTrack(trackId, track) {
    const p = this.publication(trackId);
    if (!p) throw new SwitchboardError("TrackNotFound", `no published track ${trackId}`);
    if (track) track.contentHint = p.kind === "video" ? (p.source === "screen" ? "detail" : "motion") : "speech";
    await p.transceiver.sender.replaceTrack(track);
    p.track = track;
  }

  /** Mute or unmute one of our tracks: the server stops forwarding it, everyone is told. */
  async setMuted(trackId, muted) {
    const p = this.publication(trackId);
    if (p?.track) p.track.enabled = !muted;
    await this.request({ type: "mute", trackId, muted });
    if (p) p.muted = muted;
  }

  /** Stop a track for good: the server unpublishes it and the line becomes a spare. */
  async unpublish(trackId) {
    const p = this.publication(trackId);
    await this.request({ type: "unpublish", trackId });
    if (p) {
      this.published.delete(p.mid);
      this.retire(p.transceiver);
    }
  }

  /**
   * Publish camera and microphone (or a given stream): the simple path for pages that do not
   * use /calling.js.
   * @param {{audio?: boolean, video?: boolean, simulcast?: boolean, stream?: MediaStream,
   *          width?: number, height?: number}} options
   */
  async publish(options = {}) {
    const { audio = true, video = true, simulcast = true, width = 1280, height = 720 } = options;
    const stream =
      options.stream ??
      (await navigator.mediaDevices.getUserMedia({
        audio,
        video: video ? { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: 30 } } : false,
      }));
    this.localStream = stream;
    return this.publishTracks(stream.getTracks().map((track) => ({ track, stream, simulcast })));
  }

  /** Subscribe to a track; the stream arrives as a "track" event. */
  async subscribe(trackId, { preferredLayer, maxHeight } = {}) {
    for (const s of this.subscriptions.values()) if (s.trackId === trackId) return s;
    const r = await this.request({ type: "subscribe", trackId, preferredLayer, maxHeight });
    const info = this.tracks.get(trackId);
    const sub = { subscriptionId: r.subscriptionId, trackId, kind: r.kind, streamId: r.streamId, participantId: info?.participantId, layer: null };
    this.subscriptions.set(r.subscriptionId, sub);
    this.byStream.set(r.streamId, r.subscriptionId);
    const early = this.orphans.get(r.streamId);
    if (early) {
      this.orphans.delete(r.streamId);
      this.deliver(r.subscriptionId, early);
    }
    return sub;
  }

  /** Change a subscription's wish: a layer cap (0 = lowest) and/or a frame height cap. */
  setPreferences(subscriptionId, { preferredLayer, maxHeight } = {}) {
    return this.request({ type: "setPreferences", subscriptionId, preferredLayer, maxHeight });
  }

  /** Prefer a simulcast layer (0 = lowest, 2 = highest, undefined = best that fits). */
  setPreferredLayer(subscriptionId, preferredLayer, maxHeight) {
    return this.setPreferences(subscriptionId, { preferredLayer, maxHeight });
  }

  unsubscribe(subscriptionId) {
    const sub = this.subscriptions.get(subscriptionId);
    this.subscriptions.delete(subscriptionId);
    if (sub) this.byStream.delete(sub.streamId);
    return this.request({ type: "unsubscribe", subscriptionId });
  }

  /** Mute or unmute what we publish of `kind` ("audio" or "video"). */
  async mute(kind, muted) {
    for (const p of [...this.published.values()]) if (p.kind === kind) await this.setMuted(p.trackId, muted);
  }

  /** Receive statistics of one subscription: frame size, frames decoded, bitrate, layer. */
  async subscriptionStats(subscriptionId) {
    const sub = this.subscriptions.get(subscriptionId);
    if (!sub?.receiver) return null;
    const report = await sub.receiver.getStats();
    for (const s of report.values()) {
      if (s.type !== "inbound-rtp") continue;
      const prev = sub.lastStats;
      const bitrate = prev ? ((s.bytesReceived - prev.bytes) * 8 * 1000) / Math.max(1, s.timestamp - prev.at) : 0;
      sub.lastStats = { bytes: s.bytesReceived, at: s.timestamp };
      return {
        kind: sub.kind,
        trackId: sub.trackId,
        participantId: sub.participantId,
        layer: sub.layer,
        frameWidth: s.frameWidth ?? 0,
        frameHeight: s.frameHeight ?? 0,
        framesDecoded: s.framesDecoded ?? 0,
        packetsReceived: s.packetsReceived ?? 0,
        packetsLost: s.packetsLost ?? 0,
        totalSamplesReceived: s.totalSamplesReceived ?? 0,
        audioLevel: s.audioLevel ?? 0,
        bitrate: Math.round(bitrate),
      };
    }
    return null;
  }

  /** Receive statistics per subscription. */
  async stats() {
    const out = {};
    for (const id of [...this.subscriptions.keys()]) {
      const s = await this.subscriptionStats(id);
      if (s) out[id] = s;
    }
    return out;
  }

  /** Close the connection: the server ends the call (ConnectionLost) and the registration. */
  close() {
    for (const t of this.localStream?.getTracks() ?? []) t.stop();
    this.pc?.close();
    this.pc = null;
    this.ws?.close();
    this.registration = null;
    this.resetCall();
  }
}

/** `{participantIds}` or `{all: true}` for admitLobby / rejectLobby. */
function lobbyTargets(which) {
  if (Array.isArray(which)) return { participantIds: which };
  if (which?.all) return { all: true };
  if (Array.isArray(which?.participantIds)) return { participantIds: which.participantIds };
  throw new TypeError("name the participants (an array of participantIds) or pass {all: true}");
}

/** "mid direction" per media line, for debug logs. */
function summarizeSdp(sdp) {
  return sdp
    .split("\r\n\m=")
    .slice(1)
    .map((m) => `${m.split(" ")[0]}:${/a=mid:(\S+)/.exec(m)?.[1]}:${/a=(sendonly|recvonly|sendrecv|inactive)/.exec(m)?.[1]}${m.split(" ")[1] === "0" ? ":port0" : ""}`)
    .join(" ");
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    Promise.resolve(promise).finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new SwitchboardError("Timeout", what)), ms);
    }),
  ]);
}
