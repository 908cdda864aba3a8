// Switchboard browser SDK: join a call with an access token, publish camera and microphone with
// three simulcast layers, subscribe to others, choose layers, mute, and follow participants and
// active speakers. Plain modern JavaScript; no dependencies.
//
//   import { Switchboard } from "/switchboard.js";
//   const sb = new Switchboard();                       // wss://<this host>/signal
//   await sb.connect();
//   await sb.join({ token, groupId });
//   await sb.publish();                                  // camera + microphone, simulcast q/h/f
//   sb.addEventListener("track", (e) => video.srcObject = e.detail.stream);
//   sb.autoSubscribe = true;                             // subscribe to every track published
//
// Signaling messages are documented in docs/PROTOCOL.md.

/** Simulcast layers, lowest first (the server expects this order). */
export const SIMULCAST_LAYERS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 2_000_000 },
];

export class SwitchboardError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

export class Switchboard extends EventTarget {
  /** @param {{url?: string, autoSubscribe?: boolean}} options */
  constructor(options = {}) {
    super();
    this.url = options.url ?? `wss://${location.host}/signal`;
    this.autoSubscribe = options.autoSubscribe ?? false;
    this.ws = null;
    this.pc = null;
    this.nextId = 1;
    this.pending = new Map(); // request id -> {resolve, reject}
    this.participantId = null;
    this.participants = new Map(); // participantId -> participant info
    this.tracks = new Map(); // trackId -> track info (others')
    this.published = new Map(); // mid -> {trackId, kind, track}
    this.subscriptions = new Map(); // subscriptionId -> {trackId, streamId, kind, stream, receiver, layer}
    this.byStream = new Map(); // streamId -> subscriptionId
    this.localStream = null;
    this.negotiating = Promise.resolve();
  }

  /** Open the signaling WebSocket. */
  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new SwitchboardError("ConnectionFailed", `cannot reach ${this.url}`));
      ws.onclose = (e) => {
        for (const p of this.pending.values()) p.reject(new SwitchboardError("Disconnected", "signaling closed"));
        this.pending.clear();
        this.emit("disconnected", { code: e.code, reason: e.reason });
      };
      ws.onmessage = (e) => this.onMessage(JSON.parse(e.data));
      this.ws = ws;
    });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  request(message) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...message, id }));
    });
  }

  onMessage(msg) {
    if (msg.id !== undefined && this.pending.has(msg.id)) {
      const { resolve, reject } = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.type === "error") reject(new SwitchboardError(msg.code, msg.message));
      else resolve(msg);
      return;
    }
    switch (msg.type) {
      case "participantJoined":
        this.addParticipant(msg.participant);
        this.emit("participantJoined", msg.participant);
        break;
      case "participantLeft":
        this.participants.delete(msg.participantId);
        this.emit("participantLeft", msg);
        break;
      case "trackPublished":
        this.addTrack(msg.track);
        break;
      case "trackUnpublished":
        this.tracks.delete(msg.trackId);
        for (const [id, s] of this.subscriptions) if (s.trackId === msg.trackId) this.subscriptions.delete(id);
        this.emit("trackUnpublished", msg);
        break;
      case "trackMuted":
        this.emit("trackMuted", msg);
        break;
      case "published":
        this.emit("published", msg);
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
      case "offer":
        this.enqueue(() => this.onServerOffer(msg.sdp));
        break;
      case "callStateChanged":
        this.emit("callStateChanged", msg);
        break;
      case "error":
        this.emit("error", msg);
        break;
    }
  }

  addParticipant(p) {
    this.participants.set(p.participantId, p);
    for (const t of p.tracks) this.addTrack(t);
  }

  addTrack(track) {
    if (track.participantId === this.participantId) return;
    this.tracks.set(track.trackId, track);
    this.emit("trackPublished", track);
    if (this.autoSubscribe) this.subscribe(track.trackId).catch((e) => this.emit("error", e));
  }

  /** Join a group call. Resolves with the join response. */
  async join({ token, groupId, displayName }) {
    const joined = await this.request({ type: "join", token, groupId, displayName });
    this.participantId = joined.participantId;
    this.ensurePeerConnection();
    for (const p of joined.participants) this.addParticipant(p);
    return joined;
  }

  ensurePeerConnection() {
    if (this.pc) return this.pc;
    // The server is ICE-lite and announces its own candidates; no STUN/TURN needed on loopback
    // or a LAN. Pass iceServers through the constructor option if clients sit behind NAT.
    const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
    pc.ontrack = (e) => {
      const stream = e.streams[0];
      const subscriptionId = stream ? this.byStream.get(stream.id) : undefined;
      const sub = subscriptionId !== undefined ? this.subscriptions.get(subscriptionId) : undefined;
      if (!sub) return;
      sub.stream = stream;
      sub.receiver = e.receiver;
      this.emit("track", { ...sub, subscriptionId, track: e.track, stream, mid: e.transceiver.mid });
    };
    pc.onconnectionstatechange = () => this.emit("connectionState", pc.connectionState);
    this.pc = pc;
    return pc;
  }

  /** Serialize negotiations: one offer/answer exchange at a time. */
  enqueue(task) {
    const next = this.negotiating.then(task, task);
    this.negotiating = next.catch((e) => this.emit("error", e));
    return next;
  }

  async onServerOffer(sdp) {
    // Glare: our own offer is outstanding. The server drops its offer when it gets ours and
    // offers again afterwards, so this one can be ignored.
    if (this.pc.signalingState === "have-local-offer") return;
    await this.pc.setRemoteDescription({ type: "offer", sdp });
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    await this.request({ type: "answer", sdp: this.pc.localDescription.sdp });
  }

  async negotiate() {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    const answer = await this.request({ type: "offer", sdp: this.pc.localDescription.sdp });
    await this.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  }

  /**
   * Publish camera and microphone (or a given stream).
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
    this.ensurePeerConnection();
    const published = new Promise((resolve) => {
      let want = stream.getTracks().length;
      const results = [];
      const onPublished = (e) => {
        results.push(e.detail);
        if (results.length >= want) {
          this.removeEventListener("published", onPublished);
          resolve(results);
        }
      };
      this.addEventListener("published", onPublished);
    });
    await this.enqueue(async () => {
      for (const track of stream.getTracks()) {
        const init = { direction: "sendonly", streams: [stream] };
        if (track.kind === "video" && simulcast) init.sendEncodings = SIMULCAST_LAYERS.map((l) => ({ ...l }));
        const transceiver = this.pc.addTransceiver(track, init);
        transceiver.sender.track.contentHint = track.kind === "video" ? "motion" : "speech";
      }
      await this.negotiate();
    });
    const results = await published;
    for (const r of results) {
      const t = this.pc.getTransceivers().find((x) => x.mid === r.mid);
      this.published.set(r.mid, { trackId: r.trackId, kind: r.kind, track: t?.sender.track });
    }
    return results;
  }

  /** Subscribe to a track; the stream arrives as a "track" event. */
  async subscribe(trackId, { preferredLayer, maxHeight } = {}) {
    for (const s of this.subscriptions.values()) if (s.trackId === trackId) return s;
    const r = await this.request({ type: "subscribe", trackId, preferredLayer, maxHeight });
    const info = this.tracks.get(trackId);
    const sub = { subscriptionId: r.subscriptionId, trackId, kind: r.kind, streamId: r.streamId, participantId: info?.participantId, layer: null };
    this.subscriptions.set(r.subscriptionId, sub);
    this.byStream.set(r.streamId, r.subscriptionId);
    return sub;
  }

  /** Prefer a simulcast layer (0 = lowest, 2 = highest, undefined = best that fits). */
  setPreferredLayer(subscriptionId, preferredLayer, maxHeight) {
    return this.request({ type: "setPreferences", subscriptionId, preferredLayer, maxHeight });
  }

  unsubscribe(subscriptionId) {
    const sub = this.subscriptions.get(subscriptionId);
    this.subscriptions.delete(subscriptionId);
    if (sub) this.byStream.delete(sub.streamId);
    return this.request({ type: "unsubscribe", subscriptionId });
  }

  /** Mute or unmute what we publish of `kind` ("audio" or "video"). */
  async mute(kind, muted) {
    for (const p of this.published.values()) {
      if (p.kind !== kind) continue;
      if (p.track) p.track.enabled = !muted;
      await this.request({ type: "mute", trackId: p.trackId, muted });
    }
  }

  /** Receive statistics per subscription: frame size, frames decoded, bitrate. */
  async stats() {
    const out = {};
    for (const [id, sub] of this.subscriptions) {
      if (!sub.receiver) continue;
      const report = await sub.receiver.getStats();
      for (const s of report.values()) {
        if (s.type !== "inbound-rtp") continue;
        const prev = sub.lastStats;
        const bitrate = prev ? ((s.bytesReceived - prev.bytes) * 8 * 1000) / Math.max(1, s.timestamp - prev.at) : 0;
        sub.lastStats = { bytes: s.bytesReceived, at: s.timestamp };
        out[id] = {
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
    }
    return out;
  }

  /** Leave the call and close everything. */
  async leave() {
    try {
      await this.request({ type: "leave" });
    } catch {
      // already gone
    }
    this.close();
  }

  close() {
    for (const t of this.localStream?.getTracks() ?? []) t.stop();
    this.pc?.close();
    this.ws?.close();
  }
}
