// The demo page: join a group call from a browser tab, see everyone in a grid with the simulcast
// layer and bitrate each stream arrives at. Exposes `window.demo` for automated tests.
import { Switchboard } from "/switchboard.js";

const $ = (id) => document.getElementById(id);
const LAYERS = ["low", "medium", "high"];

const state = { sb: null, stats: {}, tiles: new Map(), joined: false, speakers: [] };
window.demo = state;

const params = new URLSearchParams(location.hash.slice(1));
$("group").value = params.get("group") ?? crypto.randomUUID();
if (params.get("token")) $("token").value = params.get("token");

$("dev-token").onclick = async () => {
  const r = await fetch("/dev/token", { method: "POST" });
  if (!r.ok) {
    setStatus("the dev token endpoint is off ([dev] token_endpoint = true in config.toml)");
    return;
  }
  $("token").value = (await r.json()).token;
};

function setStatus(text) {
  $("status").textContent = text;
}

function tileFor(participantId) {
  let tile = state.tiles.get(participantId);
  if (tile) return tile;
  const figure = document.createElement("figure");
  figure.className = "tile";
  figure.dataset.participant = participantId;
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true; // audio plays through its own element
  const caption = document.createElement("figcaption");
  const info = document.createElement("span");
  info.className = "info";
  const buttons = document.createElement("span");
  buttons.className = "layers";
  for (const [label, layer] of [["auto", undefined], ["low", 0], ["medium", 1], ["high", 2]]) {
    const b = document.createElement("button");
    b.textContent = label;
    b.dataset.layer = label;
    b.onclick = () => {
      if (tile.video !== undefined) state.sb.setPreferredLayer(tile.video, layer);
    };
    buttons.append(b);
  }
  const p = state.sb.participants.get(participantId);
  caption.append(document.createTextNode(p?.displayName ?? `participant ${participantId}`), info, buttons);
  figure.append(video, caption);
  $("grid").append(figure);
  tile = { figure, videoEl: video, info, video: undefined, audio: undefined };
  state.tiles.set(participantId, tile);
  return tile;
}

async function join(event) {
  event.preventDefault();
  $("join-button").disabled = true;
  try {
    // `#subscribe=0` makes a publish-only page (tests, or a camera that watches nothing).
    const sb = new Switchboard({ autoSubscribe: params.get("subscribe") !== "0" });
    state.sb = sb;
    sb.addEventListener("track", (e) => {
      const { participantId, kind, stream, subscriptionId } = e.detail;
      const tile = tileFor(participantId);
      if (kind === "video") {
        tile.video = subscriptionId;
        tile.videoEl.srcObject = stream;
      } else {
        tile.audio = subscriptionId;
        const audio = document.createElement("audio");
        audio.autoplay = true;
        audio.srcObject = stream;
        tile.figure.append(audio);
      }
    });
    sb.addEventListener("participantLeft", (e) => {
      state.tiles.get(e.detail.participantId)?.figure.remove();
      state.tiles.delete(e.detail.participantId);
    });
    sb.addEventListener("activeSpeakers", (e) => {
      state.speakers = e.detail;
      for (const [id, tile] of state.tiles) tile.figure.classList.toggle("speaking", e.detail[0]?.participantId === id);
      $("speakers").textContent = e.detail.length ? `speaking: ${e.detail.map((s) => s.participantId).join(", ")}` : "";
    });
    sb.addEventListener("callStateChanged", (e) => setStatus(`${e.detail.state}${e.detail.reason ? `: ${e.detail.reason}` : ""}`));
    sb.addEventListener("disconnected", () => setStatus("disconnected"));
    sb.addEventListener("error", (e) => console.warn("switchboard:", e.detail));
    setStatus("connecting");
    await sb.connect();
    const joined = await sb.join({ token: $("token").value.trim(), groupId: $("group").value.trim(), displayName: $("name").value || undefined });
    setStatus(`joined as participant ${joined.participantId}`);
    $("join").hidden = true;
    $("call").hidden = false;
    await sb.publish();
    $("local").srcObject = sb.localStream;
    state.joined = true;
    location.hash = `group=${$("group").value.trim()}`;
  } catch (e) {
    setStatus(`failed: ${e.message}`);
    $("join-button").disabled = false;
  }
}

$("join").onsubmit = join;
$("leave").onclick = async () => {
  await state.sb?.leave();
  location.reload();
};
let audioMuted = false;
let videoMuted = false;
$("mute-audio").onclick = async () => {
  audioMuted = !audioMuted;
  await state.sb.mute("audio", audioMuted);
  $("mute-audio").textContent = audioMuted ? "Unmute microphone" : "Mute microphone";
};
$("mute-video").onclick = async () => {
  videoMuted = !videoMuted;
  await state.sb.mute("video", videoMuted);
  $("mute-video").textContent = videoMuted ? "Start camera" : "Stop camera";
};

// Once a second: per-stream layer, resolution and bitrate on each tile.
setInterval(async () => {
  if (!state.sb) return;
  state.stats = await state.sb.stats();
  for (const tile of state.tiles.values()) {
    const s = tile.video !== undefined ? state.stats[tile.video] : undefined;
    if (!s) continue;
    const layer = s.layer === null || s.layer === undefined ? "?" : LAYERS[s.layer] ?? s.layer;
    tile.info.textContent = ` — layer ${layer}, ${s.frameWidth}×${s.frameHeight}, ${Math.round(s.bitrate / 1000)} kbit/s`;
  }
}, 1000);
