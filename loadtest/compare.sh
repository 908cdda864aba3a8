#!/usr/bin/env bash
# Switchboard against Janus VideoRoom, back to back on this machine (issue #9).
#
#   loadtest/compare.sh                       # build, then floor, Switchboard, Janus; one table
#   DURATION=60s SCENARIO=livestream loadtest/compare.sh
#
# Both servers run in one fresh network namespace (the script re-executes itself under
# `unshare -n`), pinned to core $SERVER_CPU (0); the load tester runs on core $CLIENT_CPU (1) with
# WebRTC participants (`loadtest media --carrier webrtc`, str0m peers): against Switchboard over
# its WebSocket signaling, against Janus over the VideoRoom HTTP API (`--sfu janus`, room 1234 of
# loadtest/janus/janus.plugin.videoroom.jcfg). Janus runs with loadtest/janus/janus.jcfg, see
# loadtest/janus/README.md.
#
# Measured for each server, from the same sources for both:
#   - its CPU: utime+stime of its process from /proc/PID/stat, sampled every 0.5 s;
#   - egress: packets the subscribers received, from the load tester's progress line
#     ("received N pkt/s"), each line timestamped as it arrives;
#   - the steady window: from the first progress line with every participant joined, plus
#     $SETTLE seconds, to the last line. CPU per egress packet = CPU seconds in the window /
#     packets received in it. Whole-run figures (CPU before/after the load tester, packets from
#     its JSON) are printed too, as a check.
# The floor is `loadtest floor` (sendmmsg of 1200-byte UDP packets, CPU per packet) on the
# server core, measured first in the same run: compare only figures of one run.
#
# Environment: DURATION (20s), SCENARIO (livestream), SETTLE (3), OUT (a new /tmp/compare.*),
# SKIP_BUILD=1 (use the binaries as they are), SWITCHBOARD_BIN / LOADTEST_BIN (default
# $CARGO_TARGET_DIR/release/{switchboard,loadtest}, CARGO_TARGET_DIR defaulting to target/),
# SERVER_CPU (0), CLIENT_CPU (1), ONLY (switchboard or janus: run one side alone), JANUS_ADMIN=1
# (also read Janus's own sent-packet counters from its admin API; costs Janus CPU in the window).
#
# Pinning: inside the namespace the script pins itself (and so everything it starts: the load
# tester, the samplers, the progress reader) to $CLIENT_CPU; only the servers and the floor are
# started on $SERVER_CPU.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-20s}"
SCENARIO="${SCENARIO:-livestream}"
SETTLE="${SETTLE:-3}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SWITCHBOARD_BIN="${SWITCHBOARD_BIN:-$TARGET_DIR/release/switchboard}"
LOADTEST_BIN="${LOADTEST_BIN:-$TARGET_DIR/release/loadtest}"
ONLY="${ONLY:-}"

die() {
	echo "compare.sh: $*" >&2
	exit 1
}

# shellcheck source=loadtest/janus/lib.sh
. "$ROOT/loadtest/janus/lib.sh"

# ---------------------------------------------------------------- outside the namespace
if [[ "${SB_COMPARE_IN_NETNS:-}" != 1 ]]; then
	for tool in unshare ip taskset curl python3 getconf; do
		command -v "$tool" >/dev/null || die "needs $tool"
	done
	[[ "$(nproc --all)" -ge 2 ]] || die "needs two cores (server on $SERVER_CPU, clients on $CLIENT_CPU)"
	taskset -c "$SERVER_CPU" true 2>/dev/null || die "cannot pin to core $SERVER_CPU"
	taskset -c "$CLIENT_CPU" true 2>/dev/null || die "cannot pin to core $CLIENT_CPU"
	if ! command -v janus >/dev/null; then
		echo "compare.sh: installing janus (Debian package)" >&2
		[[ $EUID -eq 0 ]] || die "janus is not installed; run as root or: sudo apt-get install -y janus"
		apt-get install -y janus >/dev/null || { apt-get update >/dev/null && apt-get install -y janus >/dev/null; } ||
			die "apt-get install janus failed"
	fi
	if ! command -v jq >/dev/null; then
		if [[ $EUID -ne 0 ]] || ! apt-get install -y jq >/dev/null; then die "needs jq (apt-get install -y jq)"; fi
	fi
	if [[ "${SKIP_BUILD:-}" != 1 ]]; then
		cargo build --release -p switchboard -p loadtest || die "cargo build --release -p switchboard -p loadtest failed"
	fi
	[[ "$ONLY" == janus || -x "$SWITCHBOARD_BIN" ]] || die "no $SWITCHBOARD_BIN (build it, or set SWITCHBOARD_BIN)"
	[[ -x "$LOADTEST_BIN" ]] || die "no $LOADTEST_BIN (build it, or set LOADTEST_BIN)"
	if netns_is_private; then
		echo "compare.sh: already in a network namespace of its own; staying in it" >&2
	elif [[ $EUID -eq 0 ]]; then
		exec unshare -n env SB_COMPARE_IN_NETNS=1 bash "${BASH_SOURCE[0]}" "$@"
	else
		exec unshare -r -n env SB_COMPARE_IN_NETNS=1 bash "${BASH_SOURCE[0]}" "$@"
	fi
fi

# ---------------------------------------------------------------- inside the namespace
netns_is_private || die "not in a private network namespace (run it without SB_COMPARE_IN_NETNS)"
netns_up || die "cannot set up the namespace's interfaces (lo, veth jv0 with 127.0.0.2)"
# Everything this shell starts runs on the client core unless started with taskset -c $SERVER_CPU.
taskset -p -c "$CLIENT_CPU" $$ >/dev/null || die "cannot pin the script to core $CLIENT_CPU"

OUT="${OUT:-$(mktemp -d /tmp/compare.XXXXXX)}"
mkdir -p "$OUT"
SB_PID=
SAMPLER_PID=
export JANUS_CPU="$SERVER_CPU" # janus_start pins Janus there

cleanup() {
	local status=$?
	stop_sampler
	if [[ -n "${ADMIN_PID:-}" ]]; then kill "$ADMIN_PID" 2>/dev/null || true; fi
	if [[ -n "$SB_PID" ]] && kill -0 "$SB_PID" 2>/dev/null; then
		kill -TERM "$SB_PID" 2>/dev/null || true
		wait "$SB_PID" 2>/dev/null || true
	fi
	janus_stop || true
	[[ $status -ne 0 ]] && echo "compare.sh: failed (exit $status); logs and outputs in $OUT" >&2
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Append "UNIX_TIME CPU_SECONDS" for process $1 to file $2 every 0.5 s (on the client core).
start_sampler() {
	local pid="$1" file="$2"
	: >"$file"
	(
		while kill -0 "$pid" 2>/dev/null; do
			echo "$(date +%s.%N) $(proc_cpu_seconds "$pid" 2>/dev/null || echo -)"
			sleep 0.5
		done
	) >>"$file" &
	SAMPLER_PID=$!
	taskset -p -c "$CLIENT_CPU" "$SAMPLER_PID" >/dev/null
}

stop_sampler() {
	if [[ -n "$SAMPLER_PID" ]]; then
		kill "$SAMPLER_PID" 2>/dev/null || true
		wait "$SAMPLER_PID" 2>/dev/null || true
	fi
	SAMPLER_PID=
}

# Run the load tester on the client core: run_loadtest NAME SERVER_PID ARGS...
# Writes $OUT/NAME.json (--json), $OUT/NAME.progress (stderr, each line prefixed with the time it
# arrived), $OUT/NAME.cpu (server CPU samples) and $OUT/NAME.run (CPU and time before/after).
run_loadtest() {
	local name="$1" pid="$2" cpu0 cpu1 t0 t1 status=0
	shift 2
	: >"$OUT/$name.progress"
	start_sampler "$pid" "$OUT/$name.cpu"
	t0="$(date +%s.%N)"
	cpu0="$(proc_cpu_seconds "$pid")"
	echo "compare.sh: $name: taskset -c $CLIENT_CPU $(basename "$LOADTEST_BIN") $*" >&2
	taskset -c "$CLIENT_CPU" "$LOADTEST_BIN" "$@" --json "$OUT/$name.json" \
		2> >(while IFS= read -r line; do
			printf '%s %s\n' "$(date +%s.%N)" "$line" >>"$OUT/$name.progress"
			printf '  %s\n' "$line" >&2
		done) >"$OUT/$name.table" || status=$?
	cpu1="$(proc_cpu_seconds "$pid")"
	t1="$(date +%s.%N)"
	stop_sampler
	echo "$t0 $cpu0 $t1 $cpu1" >"$OUT/$name.run"
	sleep 0.2 # the stderr reader finishes
	cat "$OUT/$name.table" >&2
	[[ $status -eq 0 ]] || die "$name: the load tester failed (exit $status); see $OUT/$name.progress"
	[[ -s "$OUT/$name.json" ]] || die "$name: the load tester wrote no $OUT/$name.json"
}

# ---- 1. the floor, on the server core: before each server's run and at the end (the figure
# drifts with what else the machine does; the table shows the median and each reading).
echo "compare.sh: outputs in $OUT" >&2
: >"$OUT/floor.txt"
measure_floor() {
	local line us
	line="$(taskset -c "$SERVER_CPU" "$LOADTEST_BIN" floor)" || die "loadtest floor failed"
	echo "compare.sh: floor ($1): $line" >&2
	us="$(awk '{print $1; exit}' <<<"$line")"
	[[ "$us" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "loadtest floor printed no figure: $line"
	echo "$us $1" >>"$OUT/floor.txt"
}
measure_floor start

# ---- 2. Switchboard
if [[ "$ONLY" != janus ]]; then
	mkdir -p "$OUT/switchboard"
	# Built-in defaults (no config.toml in that folder): HTTPS 127.0.0.1:8443, QUIC 4433, WebRTC
	# on 127.0.0.1:50000 announced as 127.0.0.1; one media worker (it has one core); every client
	# shares 127.0.0.1, so the per-address join limit is lifted.
	(
		cd "$OUT/switchboard"
		export SWITCHBOARD__SERVER__LOG=warn SWITCHBOARD__SERVER__SHUTDOWN_GRACE_SECONDS=1 \
			SWITCHBOARD__MEDIA__WORKERS=1 SWITCHBOARD__LIMITS__JOINS_PER_SECOND_PER_ADDRESS=100000
		exec taskset -c "$SERVER_CPU" "$SWITCHBOARD_BIN" serve
	) >"$OUT/switchboard.log" 2>&1 </dev/null &
	SB_PID=$!
	for _ in $(seq 300); do
		curl -sk -o /dev/null --max-time 1 https://127.0.0.1:8443/readyz && break
		kill -0 "$SB_PID" 2>/dev/null || { tail -n 30 "$OUT/switchboard.log" >&2; die "switchboard exited while starting"; }
		sleep 0.1
	done
	curl -sk -o /dev/null --max-time 1 https://127.0.0.1:8443/readyz || die "switchboard not ready within 30 s"
	echo "compare.sh: switchboard (pid $SB_PID) $(taskset -cp "$SB_PID" | sed 's/.*: /on cores /')" >&2
	DATA="$OUT/switchboard/data"
	# The connection string (with the access key) goes by environment, not on the command line.
	SWITCHBOARD_CONNECTION_STRING="$(cat "$DATA/connection-string")"
	export SWITCHBOARD_CONNECTION_STRING
	run_loadtest switchboard "$SB_PID" media --carrier webrtc --scenario "$SCENARIO" --duration "$DURATION" \
		--settle "${SETTLE}s" --ca-cert "$DATA/tls/ca.pem"
	unset SWITCHBOARD_CONNECTION_STRING
	kill -TERM "$SB_PID"
	wait "$SB_PID" 2>/dev/null || true
	SB_PID=
fi

# ---- 3. Janus
if [[ "$ONLY" != switchboard ]]; then
	measure_floor "before janus"
	janus_start "$OUT/janus.log" || die "Janus did not start; see $OUT/janus.log"
	janus_check >"$OUT/janus-check.txt" || die "the Janus API check failed; see $OUT/janus-check.txt and $OUT/janus.log"
	echo "compare.sh: janus (pid $JANUS_PID) $(taskset -cp "$JANUS_PID" | sed 's/.*: /on cores /')" >&2
	# JANUS_ADMIN=1: Janus's own count of the RTP packets it sent (admin API, handle_info of every
	# handle), read twice inside the steady window as a check of the subscribers' count. Off by
	# default: each reading is ~85 requests over several seconds, Janus CPU inside the window.
	# Not trusted yet: with 40 subscribers it said 4967 pkt/s where the subscribers counted 8243
	# (a handle_info that fails counts 0); with 3 subscribers each handle's counters matched.
	ADMIN_PID=
	if [[ "${JANUS_ADMIN:-}" == 1 ]]; then
		(
			dur="$(sed -E 's/s$//' <<<"$DURATION")"
			# Joins take ~2 s; the first reading after the settle, the second done before the end.
			if [[ "$dur" =~ ^[0-9]+$ ]] && ((dur >= SETTLE + 14)); then
				sleep "$((SETTLE + 3))"
				a0="$(date +%s.%N)"; na="$(janus_egress_packets)"; a1="$(date +%s.%N)"
				sleep "$((dur - SETTLE - 11))"
				b0="$(date +%s.%N)"; nb="$(janus_egress_packets)"; b1="$(date +%s.%N)"
				echo "$a0 $a1 $na $b0 $b1 $nb" >"$OUT/janus.admin"
			fi
		) 2>/dev/null &
		ADMIN_PID=$!
	fi
	run_loadtest janus "$JANUS_PID" media --carrier webrtc --sfu janus --janus-url "$JANUS_URL" \
		--janus-room "$JANUS_ROOM" --scenario "$SCENARIO" --duration "$DURATION" --settle "${SETTLE}s"
	if [[ -n "$ADMIN_PID" ]]; then wait "$ADMIN_PID" 2>/dev/null || true; fi
	ADMIN_PID=
	janus_stop
	if grep -qE '\[(ERR|FATAL)\]' "$OUT/janus.log"; then
		echo "compare.sh: Janus logged errors (first ones below; all in $OUT/janus.log):" >&2
		grep -E '\[(ERR|FATAL)\]' "$OUT/janus.log" | head -n 5 >&2
	fi
fi

measure_floor end

# ---- 4. the table
python3 - "$OUT" "$SETTLE" <<'PY'
import json, os, re, statistics, sys

out, settle = sys.argv[1], float(sys.argv[2])
floors = [(float(l.split()[0]), l.split(None, 1)[1].strip()) for l in open(os.path.join(out, "floor.txt")) if l.strip()]
floor = statistics.median(f for f, _ in floors)
PROGRESS = re.compile(r"^(\S+) \[\s*[\d.]+ s\] participants (\d+) \(failed (\d+)\), received (\d+) pkt/s")
RESOLUTION = ["320x180", "640x360", "1280x720"]


def load(name):
    path = os.path.join(out, f"{name}.json")
    if not os.path.exists(path):
        return None
    r = json.load(open(path))
    shape = r.get("shape", {})
    rooms, pubs, subs = shape.get("rooms", 1), shape.get("publishers", 0), shape.get("subscribers", 0)
    total = rooms * (pubs + subs)
    receivers = rooms * subs + (rooms * pubs if pubs > 1 else 0)
    # Progress lines: (time, joined, received pkt/s in the second before).
    lines = []
    for l in open(os.path.join(out, f"{name}.progress")):
        m = PROGRESS.match(l)
        if m:
            lines.append((float(m[1]), int(m[2]), int(m[4])))
    t0, cpu0, t1, cpu1 = map(float, open(os.path.join(out, f"{name}.run")).read().split())
    samples = [(t0, cpu0), (t1, cpu1)]
    for l in open(os.path.join(out, f"{name}.cpu")):
        t, c = l.split()
        if c != "-":
            samples.append((float(t), float(c)))
    samples.sort()

    def cpu_at(t):
        # Linear between the two samples around t.
        for (t0, c0), (t1, c1) in zip(samples, samples[1:]):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c0
        return None

    steady = None
    full = [i for i, (_, joined, _) in enumerate(lines) if joined >= total]
    if full:
        start_t = lines[full[0]][0] + settle
        window = [x for x in lines if x[0] > start_t]
        if len(window) >= 2:
            w0, w1 = window[0][0], window[-1][0]
            # Each line's rate covers the second before it: packets from w0 to w1.
            packets = sum(b[2] * (b[0] - a[0]) for a, b in zip(window, window[1:]))
            c0, c1 = cpu_at(w0), cpu_at(w1)
            if c0 is not None and c1 is not None and packets > 0:
                steady = {"seconds": w1 - w0, "packets": packets, "cpu": c1 - c0}
    received = r.get("packets_received", 0)
    layers = r.get("received_video_layers")  # video packets received per layer, lowest first
    resolution = r.get("subscriber_resolution")
    share = r.get("subscriber_resolution_share")
    if resolution and share is not None:
        resolution = f"{resolution} ({100 * share:.0f} %)"
    elif not resolution and isinstance(layers, list) and sum(layers) > 0:
        top = max(range(len(layers)), key=lambda i: layers[i])
        resolution = f"{RESOLUTION[top] if top < 3 else top} ({100 * layers[top] / sum(layers):.0f} %)"
    return {
        "steady": steady,
        "whole_cpu": cpu1 - cpu0,
        "whole_seconds": t1 - t0,
        "received": received,
        "receivers": receivers,
        "joined": r.get("joins"),
        "failed": r.get("failed_participants"),
        "loss": r.get("loss_ratio"),
        "p50": (r.get("latency_ms") or {}).get("p50"),
        "resolution": resolution or "-",
        "layers": "/".join(str(n) for n in layers) if isinstance(layers, list) else None,
        "sub_pps": r.get("subscriber_receive_pkt_per_s"),
        "sub_kbps": r.get("subscriber_receive_kbps"),
        "driver_busy": r.get("webrtc_driver_busy_share"),
        "metrics_us": r.get("server_us_per_forwarded_packet"),
        "metrics_rate": (r.get("forwarded_packets") or 0) / r["seconds"] if r.get("seconds") else None,
    }


sb, ja = load("switchboard"), load("janus")

admin_rate = None
try:
    a0, a1, na, b0, b1, nb = map(float, open(os.path.join(out, "janus.admin")).read().split())
    if nb > na and b0 > a1:
        admin_rate = (nb - na) / ((b0 + b1) / 2 - (a0 + a1) / 2)
except (OSError, ValueError):
    pass


def us(x):
    s = x and x["steady"]
    return s["cpu"] * 1e6 / s["packets"] if s else None


def rate(x):
    s = x and x["steady"]
    return s["packets"] / s["seconds"] if s else None


def per_sub(x):
    r = rate(x)
    return r / x["receivers"] if r is not None and x["receivers"] else None


def whole_us(x):
    return x["whole_cpu"] * 1e6 / x["received"] if x and x["received"] else None


def cpu_share(x):
    s = x and x["steady"]
    return 100 * s["cpu"] / s["seconds"] if s else None


rows = [
    ("server CPU per egress packet (µs)", us, "{:.2f}", True),
    ("egress packets/s (received)", rate, "{:.0f}", True),
    ("per-subscriber receive (pkt/s)", lambda x: x and x["sub_pps"], "{:.1f}", True),
    ("per-subscriber receive (kbit/s)", lambda x: x and x["sub_kbps"], "{:.0f}", True),
    ("subscriber video (share of packets)", lambda x: x and x["resolution"], "{}", False),
    ("video packets per layer q/h/f", lambda x: x and x["layers"], "{}", False),
    ("server CPU (% of its core)", cpu_share, "{:.0f}", True),
    ("server / floor", lambda x: us(x) / floor if us(x) else None, "{:.1f}", True),
    ("loss (%)", lambda x: x and x["loss"] is not None and 100 * x["loss"], "{:.3f}", False),
    ("latency p50 (ms)", lambda x: x and x["p50"], "{:.2f}", False),
    ("participants joined (failed)", lambda x: x and f"{x['joined']} ({x['failed']})", "{}", False),
    ("load tester's driver thread (% core)", lambda x: x and x["driver_busy"] and 100 * x["driver_busy"], "{:.0f}", False),
    ("whole run: CPU / received (µs)", whole_us, "{:.2f}", True),
    ("per-subscriber (steady window, pkt/s)", per_sub, "{:.1f}", True),
    # The load tester's own figures from Switchboard's /metrics (its window, its counters).
    ("switchboard metrics: µs/forwarded", lambda x: x is sb and x and x["metrics_us"], "{:.2f}", False),
    ("switchboard metrics: forwarded/s", lambda x: x is sb and x and x["metrics_rate"], "{:.0f}", False),
    # Janus's own RTP packets sent (admin API handle_info, two readings in the window).
    ("janus admin API: sent pkt/s (JANUS_ADMIN=1)", lambda x: x is ja and x and admin_rate, "{:.0f}", False),
]


def fmt(f, v):
    return "-" if v is None or v is False else f.format(v)


print()
print(f"{'':38} {'switchboard':>14} {'janus':>14} {'sb/janus':>9}")
for label, get, f, ratio in rows:
    a, b = get(sb), get(ja)
    q = fmt("{:.2f}", a / b) if ratio and isinstance(a, float) and isinstance(b, float) and b else ""
    print(f"{label:38} {fmt(f, a):>14} {fmt(f, b):>14} {q:>9}")
print(f"{'floor: bare sendmmsg per packet (µs)':38} {floor:>14.2f}   median of " + ", ".join(f"{f:.2f} ({w})" for f, w in floors))
print(f"\nsteady window: from {settle:.0f} s after everyone joined to the end (CPU, egress); the")
print("per-subscriber rates and layers are the load tester's own window (same settle); RTP payload")
print(f"kbit/s. Outputs in {out}")
PY
