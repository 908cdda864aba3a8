// A WebRTC signaling client written from docs/PROTOCOL.md alone (not from web/switchboard.js),
// following its glare rules literally. Loaded into a page by negotiation.test.mjs; it defines
// window.LiteralClient.
//
// What it does, rule by rule ("Glare" in PROTOCOL.md):
// 1. Our offer awaits its answer from when it is sent until its `answer` (or `error`) arrives.
//    A server `offer` that arrives meanwhile is ignored.
// 2. Sending an offer withdraws every server offer received but not answered yet: such an offer
//    is dropped without being applied.
// 3. One negotiation at a time, in arrival order (a promise chain). Other server offers are
//    applied and answered with their `offerId`; an offer that cannot be applied is rejected with
//    `rejectOffer`; a copy of an offerId already answered is ignored.
window.LiteralClient = class LiteralClient {
  constructor(url) {
    this.url = url;
    this.nextId = 1;
    this.waiting = new Map(); // request id -> {resolve, type}
    this.offerAwaitingAnswer = false;
    this.offersSent = 0;
    this.answered = 0;
    this.chain = Promise.resolve();
    this.log = []; // what happened to each server offer
    /** Called with each `trackPublished` event's track. */
    this.onTrackPublished = null;
    this.errors = [];
    this.pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
    this.streams = new Map(); // stream id -> MediaStream
    this.pc.ontrack = (e) => {
      for (const s of e.streams) this.streams.set(s.id, s);
    };
  }

  connect() {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(this.url);
      this.ws.onopen = () => resolve();
      this.ws.onerror = () => reject(new Error("WebSocket error"));
      this.ws.onmessage = (e) => this.onMessage(JSON.parse(e.data));
    });
  }

  request(message) {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, { resolve, type: message.type });
      if (message.type === "offer") {
        this.offerAwaitingAnswer = true;
        this.offersSent++;
      }
      this.ws.send(JSON.stringify({ ...message, id }));
    });
  }

  onMessage(msg) {
    const w = msg.id !== undefined ? this.waiting.get(msg.id) : undefined;
    if (w) {
      this.waiting.delete(msg.id);
      if (w.type === "offer") this.offerAwaitingAnswer = false; // rule 1: on arrival
      if (msg.type === "error") this.errors.push(`${w.type}: ${msg.code} ${msg.message}`);
      w.resolve(msg);
      return;
    }
    if (msg.type === "trackPublished") this.onTrackPublished?.(msg.track);
    if (msg.type !== "offer") return;
    if (this.offerAwaitingAnswer) {
      this.log.push(`ignored ${msg.offerId} (crossed our offer)`);
      return;
    }
    const epoch = this.offersSent;
    this.run(async () => {
      if (this.offersSent !== epoch) {
        this.log.push(`dropped ${msg.offerId} (withdrawn by our offer)`);
        return;
      }
      if (msg.offerId <= this.answered) {
        this.log.push(`ignored ${msg.offerId} (a copy)`);
        return;
      }
      try {
        await this.pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
        await this.pc.setLocalDescription(await this.pc.createAnswer());
      } catch (e) {
        this.errors.push(`applying offer ${msg.offerId}: ${e.message}`);
        if (this.pc.signalingState === "have-remote-offer") await this.pc.setLocalDescription({ type: "rollback" });
        await this.request({ type: "rejectOffer", offerId: msg.offerId, reason: e.message });
        return;
      }
      this.answered = msg.offerId;
      this.log.push(`answered ${msg.offerId}`);
      await this.request({ type: "answer", offerId: msg.offerId, sdp: this.pc.localDescription.sdp });
    });
  }

  /** Rule 3: one negotiation at a time. */
  run(task) {
    const next = this.chain.then(task);
    this.chain = next.catch((e) => this.errors.push(String(e)));
    return next;
  }

  async join(token, groupId) {
    const r = await this.request({ type: "join", token, groupId });
    if (r.type !== "joined") throw new Error(`join: ${JSON.stringify(r)}`);
    return r;
  }

  subscribe(trackId) {
    return this.request({ type: "subscribe", trackId });
  }

  /**
   * Publish the camera (three simulcast layers, lowest first unless `encodings` says otherwise)
   * and the microphone.
   */
  publish(stream, encodings) {
    return this.run(async () => {
      for (const track of stream.getTracks()) {
        const init = { direction: "sendonly", streams: [stream] };
        if (track.kind === "video") {
          init.sendEncodings = encodings ?? [
            { rid: "q", scaleResolutionDownBy: 4 },
            { rid: "h", scaleResolutionDownBy: 2 },
            { rid: "f" },
          ];
        }
        this.pc.addTransceiver(track, init);
      }
      await this.pc.setLocalDescription(await this.pc.createOffer());
      const answer = await this.request({ type: "offer", sdp: this.pc.localDescription.sdp });
      if (answer.type !== "answer") throw new Error(`offer: ${JSON.stringify(answer)}`);
      await this.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    });
  }

  /** Stream IDs whose video has decoded more than `frames` frames. */
  async decodingStreams(frames = 10) {
    const out = [];
    for (const id of this.streams.keys()) if ((await this.framesDecoded(id)) > frames) out.push(id);
    return out;
  }

  /** The inbound-rtp stats of the video arriving with stream ID `streamId` (`{}` before any). */
  async videoStats(streamId) {
    const track = this.streams.get(streamId)?.getVideoTracks()[0];
    const receiver = track && this.pc.getReceivers().find((r) => r.track === track);
    if (!receiver) return {};
    for (const s of (await receiver.getStats()).values()) if (s.type === "inbound-rtp") return s;
    return {};
  }

  /** Frames decoded of the video arriving with stream ID `streamId`. */
  async framesDecoded(streamId) {
    const stream = this.streams.get(streamId);
    const track = stream?.getVideoTracks()[0];
    if (!track) return 0;
    const receiver = this.pc.getReceivers().find((r) => r.track === track);
    for (const s of (await receiver.getStats()).values()) {
      if (s.type === "inbound-rtp") return s.framesDecoded ?? 0;
    }
    return 0;
  }
};
