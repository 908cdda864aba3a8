// Shared helpers for the real-browser tests: a switchboard server process on loopback, Debian's
// chromium driven by playwright-core, and the demo page.
import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export function switchboardBin() {
  if (process.env.SWITCHBOARD_BIN) return process.env.SWITCHBOARD_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(root, "target");
  return join(target, "debug", "switchboard");
}

/** Start `switchboard serve` with its data in a temp dir; resolves when it is ready. */
export async function startServer({ env = {}, listenIp = "127.0.0.1" } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "sb-browser-"));
  const child = spawn(switchboardBin(), ["serve"], {
    cwd: dir,
    env: {
      ...process.env,
      RUST_LOG: process.env.SB_SERVER_LOG ?? "warn",
      SWITCHBOARD__SERVER__DATA_DIR: join(dir, "data"),
      SWITCHBOARD__HTTP__LISTEN: `${listenIp}:0`,
      SWITCHBOARD__QUIC__LISTEN: `${listenIp}:0`,
      SWITCHBOARD__WEBRTC__LISTEN_IP: listenIp,
      SWITCHBOARD__WEBRTC__PORT_START: "0",
      SWITCHBOARD__DEV__TOKEN_ENDPOINT: "true",
      SWITCHBOARD__SERVER__SHUTDOWN_GRACE_SECONDS: "1",
      ...env,
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = await new Promise((resolveLine, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error("server did not become ready")), 60_000);
    child.stdout.on("data", (chunk) => {
      buf += chunk;
      const ready = buf.split("\n").find((l) => l.startsWith("switchboard ready"));
      if (ready) {
        clearTimeout(timer);
        resolveLine(ready);
      }
    });
    child.on("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  const endpoint = line.split(" ")[2];
  const quic = /quic=(\S+)/.exec(line)[1];
  const ca = resolve(dir, /\(trust ([^;]+);/.exec(line)[1]);
  const connectionString = readFileSync(join(dir, "data", "connection-string"), "utf8").trim();
  return {
    dir,
    endpoint,
    quic,
    ca,
    connectionString,
    async metric(name) {
      const text = await fetchText(`${endpoint}metrics`);
      const l = text.split("\n").find((x) => x.startsWith(name + " ") || x.startsWith(name + "{") && x.split(" ")[0] === name);
      return l ? Number(l.split(" ").pop()) : 0;
    },
    async metricsText() {
      return fetchText(`${endpoint}metrics`);
    },
    async devToken() {
      return JSON.parse(await fetchText(`${endpoint}dev/token`, "POST"));
    },
    /** A management API call, signed like the ACS SDKs sign (HMAC-SHA256); resolves with the JSON. */
    acs(method, path, body) {
      return signedRequest(connectionString, method, path, body);
    },
    /** Another token for an existing identity: `switchboard token issue` on the data dir. */
    issueToken(identity, { scopes = "voip", minutes } = {}) {
      const args = ["token", "issue", "--identity", identity, "--scopes", scopes];
      if (minutes) args.push("--minutes", String(minutes));
      return execFileSync(switchboardBin(), args, {
        cwd: dir,
        env: { ...process.env, RUST_LOG: "warn", SWITCHBOARD__SERVER__DATA_DIR: join(dir, "data") },
        encoding: "utf8",
      }).trim();
    },
    async stop() {
      const exited = new Promise((r) => child.on("exit", r));
      child.kill("SIGTERM");
      await exited;
      // The data directory is the server's alone; SB_KEEP_TMP=1 keeps it for a post-mortem.
      if (!process.env.SB_KEEP_TMP) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An ACS-style HMAC-signed HTTPS request (x-ms-date, x-ms-content-sha256, Authorization). */
async function signedRequest(connectionString, method, path, body) {
  const { createHash, createHmac } = await import("node:crypto");
  const { request } = await import("node:https");
  const parts = Object.fromEntries(connectionString.split(";").filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf("=")).toLowerCase(), kv.slice(kv.indexOf("=") + 1)]));
  const url = new URL(path, parts.endpoint);
  const text = body === undefined ? "" : JSON.stringify(body);
  const date = new Date().toUTCString();
  const hash = createHash("sha256").update(text).digest("base64");
  const toSign = `${method}\n${url.pathname}${url.search}\n${date};${url.host};${hash}`;
  const signature = createHmac("sha256", Buffer.from(parts.accesskey, "base64")).update(toSign).digest("base64");
  const headers = {
    "x-ms-date": date,
    "x-ms-content-sha256": hash,
    authorization: `HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=${signature}`,
    "content-type": method === "PATCH" ? "application/merge-patch+json" : "application/json",
    "content-length": Buffer.byteLength(text),
  };
  return new Promise((resolveBody, reject) => {
    const req = request(url, { method, headers, rejectUnauthorized: false }, (res) => {
      let data = "";
      res.on("data", (c) => (data += c));
      res.on("end", () => {
        if (res.statusCode >= 300) reject(new Error(`${method} ${path}: ${res.statusCode} ${data}`));
        else resolveBody(data ? JSON.parse(data) : null);
      });
    });
    req.on("error", reject);
    req.end(text);
  });
}

/** HTTPS request to the test server (its certificate is self-signed). */
async function fetchText(url, method = "GET") {
  const { request } = await import("node:https");
  return new Promise((resolveBody, reject) => {
    const req = request(url, { method, rejectUnauthorized: false }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolveBody(body));
    });
    req.on("error", reject);
    req.end();
  });
}

/**
 * Debian's chromium, headless, with a fake camera and microphone. A browser that dies while
 * starting (seen now and then on busy machines) is started once more.
 */
export async function launchBrowser(options = {}) {
  try {
    return await launchOnce(options);
  } catch (e) {
    if (!String(e).includes("has been closed")) throw e;
    console.log(`# chromium died while starting; starting it again (${String(e).split("\n")[0]})`);
    await sleep(1000);
    return launchOnce(options);
  }
}

async function launchOnce({ executablePath = "/usr/bin/chromium", extraArgs = [] } = {}) {
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--use-fake-device-for-media-stream",
      "--use-fake-ui-for-media-stream",
      "--allow-loopback-in-peer-connection",
      // Pages served from disk (SB_WEB_FROM_DISK) have no address, so Chromium would treat them
      // as public and block their connections to the loopback server.
      `--disable-features=WebRtcHideLocalIpsWithMdns${process.env.SB_WEB_FROM_DISK ? ",LocalNetworkAccessChecks" : ""}`,
      "--ignore-certificate-errors",
      "--autoplay-policy=no-user-gesture-required",
      ...extraArgs,
    ],
  });
}

const WEB_ASSETS = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/calling.js": ["calling.js", "text/javascript; charset=utf-8"],
  "/switchboard.js": ["switchboard.js", "text/javascript; charset=utf-8"],
  "/demo.js": ["demo.js", "text/javascript; charset=utf-8"],
  "/demo.css": ["demo.css", "text/css; charset=utf-8"],
};

/** A meeting's join link (`/meet/<token>`) is the call page too. */
const webAsset = (pathname) => WEB_ASSETS[pathname] ?? (/^\/meet\/[^/]+$/.test(pathname) ? WEB_ASSETS["/"] : undefined);

/**
 * With SB_WEB_FROM_DISK=1 the pages get web/ from the working tree instead of the copy compiled
 * into the server, so a change to the page or the SDK needs no rebuild. CI leaves it unset.
 */
async function serveWebFromDisk(context) {
  if (!process.env.SB_WEB_FROM_DISK) return;
  await context.route(
    (url) => webAsset(url.pathname) !== undefined,
    (route) => {
      const [file, contentType] = webAsset(new URL(route.request().url()).pathname);
      route.fulfill({ status: 200, contentType, body: readFileSync(join(root, "web", file), "utf8") });
    },
  );
}

/**
 * Open the demo page in a fresh browser context (one person, one device). `hash` follows the
 * endpoint: `#group=...`, or a path such as `meet/<token>#name=Olga`. `initScript` (a function)
 * runs in the page before its own scripts.
 */
export async function openDemo(browser, endpoint, hash = "", { initScript, ...contextOptions } = {}) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, ...contextOptions });
  await serveWebFromDisk(context);
  if (initScript) await context.addInitScript(initScript);
  // SB_SIGNAL_LOG=1: every signaling message in and out, on the test's output.
  if (process.env.SB_SIGNAL_LOG) await context.addInitScript(() => (globalThis.SWITCHBOARD_DEBUG = true));
  const page = await context.newPage();
  const tag = hash.match(/name=([^&]+)/)?.[1] ?? "page";
  page.on("console", (m) => {
    if (process.env.SB_BROWSER_LOG || process.env.SB_SIGNAL_LOG) console.log(`[${tag}] ${m.text()}`);
  });
  page.on("pageerror", (e) => console.log(`[page error] ${e.message}`));
  const url = `${endpoint}${hash}`;
  // A browser started right after its network came up may see that as a network change and
  // abort the first navigation; that is the test set-up, not the server.
  for (let attempt = 1; ; attempt++) {
    try {
      await page.goto(url);
      break;
    } catch (e) {
      if (attempt >= 3 || !String(e).includes("ERR_NETWORK_CHANGED")) throw e;
      await sleep(500);
    }
  }
  return page;
}

/** Sign the page in: a token given (the page registers with it) or a dev token. */
export async function signIn(page, token) {
  if (token) {
    await page.evaluate(() => (document.getElementById("paste").open = true));
    await page.fill("#token", token);
    await page.click("#use-token");
  } else {
    await page.click("#dev-token");
  }
  await page.waitForFunction(() => window.demo.registered === true, null, { timeout: 30_000 });
  return page.evaluate(() => window.demo.identity);
}

/** Open the demo page in a fresh context, get a dev token, join `group`. */
export async function joinDemo(browser, endpoint, group, { subscribe = true } = {}) {
  const page = await openDemo(browser, endpoint, `#group=${group}${subscribe ? "" : "&subscribe=0"}`);
  await signIn(page);
  await page.click("#join-group");
  await page.waitForFunction(() => window.demo.joined === true, null, { timeout: 30_000 });
  return page;
}

/** Fresh stats of the page's video (or audio) subscriptions. */
export function subscriptionStats(page, kind) {
  return page.evaluate(async (k) => Object.values(await window.demo.sb.stats()).filter((s) => s.kind === k), kind);
}

/**
 * Frames the page's camera encoder has produced so far on each simulcast layer (indexed as
 * SIMULCAST_LAYERS), from its outbound-rtp stats; 0 for a layer not being sent.
 */
export function encodedFrames(page) {
  return page.evaluate(async () => {
    const { SIMULCAST_LAYERS } = await import("/switchboard.js");
    const byRid = new Map();
    for (const s of (await window.demo.sb.pc.getStats()).values()) {
      if (s.type === "outbound-rtp" && s.kind === "video") byRid.set(s.rid, s.framesEncoded ?? 0);
    }
    return SIMULCAST_LAYERS.map((l) => byRid.get(l.rid) ?? 0);
  });
}

/** Poll `check` (async, returns truthy when done) until it holds or `timeoutMs` passes. */
export async function waitUntil(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Start sampling the page's video receiver every 50 ms (framesDecoded, frameWidth). */
export async function startSampler(page) {
  await page.evaluate(() => {
    const sb = window.demo.sb;
    const sub = [...sb.subscriptions.values()].find((s) => s.kind === "video" && s.receiver);
    window.samples = [];
    window.sampler = setInterval(async () => {
      const report = await sub.receiver.getStats();
      for (const s of report.values()) {
        if (s.type === "inbound-rtp") {
          window.samples.push({
            t: performance.now(),
            decoded: s.framesDecoded ?? 0,
            width: s.frameWidth ?? 0,
            layer: sub.layer,
            // What arrived and what was asked for: the story of a freeze.
            received: s.framesReceived ?? 0,
            packets: s.packetsReceived ?? 0,
            lost: s.packetsLost ?? 0,
            keyframes: s.keyFramesDecoded ?? 0,
            plis: s.pliCount ?? 0,
            nacks: s.nackCount ?? 0,
          });
        }
      }
    }, 50);
  });
}

/**
 * The samples so far, the longest time frames stopped being decoded (ms), and the samples from
 * a little before that freeze to its end (`freeze`), for a failure message.
 */
export async function samples(page) {
  const s = await page.evaluate(() => window.samples);
  let longest = 0;
  let lastChange = s.length ? s[0].t : 0;
  let lastChangeAt = 0;
  let span = [0, 0];
  for (let i = 1; i < s.length; i++) {
    if (s[i].decoded > s[i - 1].decoded) {
      lastChange = s[i].t;
      lastChangeAt = i;
    }
    if (s[i].t - lastChange > longest) {
      longest = s[i].t - lastChange;
      span = [lastChangeAt, i];
    }
  }
  const t0 = s.length ? s[0].t : 0;
  const freeze = s
    .slice(Math.max(0, span[0] - 4), span[1] + 2)
    .map((x) => `${Math.round(x.t - t0)}ms L${x.layer} w${x.width} dec${x.decoded} rcv${x.received} pkt${x.packets} lost${x.lost} kf${x.keyframes} pli${x.plis} nack${x.nacks}`);
  return { samples: s, longestFreezeMs: longest, freeze };
}

/** Click a layer button ("auto", "low", "medium", "high") on the first remote tile. */
export async function chooseLayer(page, label) {
  // The layer buttons are diagnostics: shown once the toggle is on.
  if (!(await page.evaluate(() => document.body.classList.contains("diagnostics")))) await page.click("#toggle-diagnostics");
  await page.click(`figure.tile[data-participant] button[data-layer="${label}"]`);
}

/** A callback receiver on loopback: collects the ACS event names per call connection. */
export async function callbackReceiver() {
  const events = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      for (const e of JSON.parse(body)) {
        events.push({ name: e.type.replace("Microsoft.Communication.", ""), data: e.data });
      }
      res.writeHead(200).end();
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}/events`, events, close: () => server.close() };
}
