# shellcheck shell=bash
# Shell functions for running Janus next to the load tester; sourced by netns.sh and
# loadtest/compare.sh (bash). Every function expects to run inside a network namespace of its
# own (`unshare -n`): netns_up changes that namespace's interfaces.

JANUS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JANUS_URL="${JANUS_URL:-http://127.0.0.2:8088/janus}"
JANUS_ADMIN_URL="${JANUS_ADMIN_URL:-http://127.0.0.2:7088/admin}"
JANUS_ADMIN_SECRET="${JANUS_ADMIN_SECRET:-janusoverlord}"
JANUS_ROOM="${JANUS_ROOM:-1234}"

# True when this shell is in a network namespace of its own: not PID 1's, or, where PID 1's
# cannot be read (it cannot on some sandboxes, even as root), one with no interface but lo and
# the jv0/jv1 pair netns_up adds.
netns_is_private() {
	local mine init
	mine="$(readlink /proc/self/ns/net 2>/dev/null)" || return 1
	if init="$(readlink /proc/1/ns/net 2>/dev/null)"; then
		[[ "$mine" != "$init" ]]
	else
		! ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | grep -qvxE 'lo|jv0|jv1'
	fi
}

# Bring lo up and add the veth jv0 with 127.0.0.2/32. Janus gathers ICE candidates on no
# interface flagged LOOPBACK, so it needs a non-loopback interface to gather on; the kernel puts
# 127.0.0.2 in the local routing table (`local 127.0.0.2 dev jv0`), so anything in this
# namespace reaches it over loopback delivery (no packet crosses the veth). The peer end (jv1)
# must be up too, or jv0 has no carrier.
netns_up() {
	ip link set lo up
	if ! ip link show jv0 >/dev/null 2>&1; then
		ip link add jv0 type veth peer name jv1
		ip addr add 127.0.0.2/32 dev jv0
	fi
	ip link set jv1 up
	ip link set jv0 up
}

# POST a Janus API request: janus_post PATH JSON (PATH after /janus, e.g. "" or "/$session").
janus_post() {
	curl -sS --fail --max-time 10 -H 'content-type: application/json' -d "$2" "$JANUS_URL$1"
}

# Start Janus on core ${JANUS_CPU:-0} with this folder's configuration; its output goes to $1
# (default: stdout). Sets JANUS_PID. Waits until its HTTP API answers (up to 10 s).
janus_start() {
	local log="${1:-/dev/stdout}"
	command -v janus >/dev/null || { echo "janus is not installed (apt-get install -y janus)" >&2; return 1; }
	taskset -c "${JANUS_CPU:-0}" janus -F "$JANUS_DIR" -C "$JANUS_DIR/janus.jcfg" >"$log" 2>&1 </dev/null &
	JANUS_PID=$!
	for _ in $(seq 100); do
		if curl -s -o /dev/null --max-time 1 "$JANUS_URL/info"; then return 0; fi
		if ! kill -0 "$JANUS_PID" 2>/dev/null; then
			echo "janus exited while starting; its output:" >&2
			[[ -f "$log" ]] && tail -n 30 "$log" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "janus did not answer $JANUS_URL/info within 10 s" >&2
	return 1
}

janus_stop() {
	if [[ -n "${JANUS_PID:-}" ]] && kill -0 "$JANUS_PID" 2>/dev/null; then
		kill -INT "$JANUS_PID" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$JANUS_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$JANUS_PID" 2>/dev/null || true
		wait "$JANUS_PID" 2>/dev/null || true
	fi
	JANUS_PID=
}

# CPU seconds (user + system, all threads) a process has used: fields 14 and 15 of
# /proc/PID/stat, in clock ticks.
proc_cpu_seconds() {
	local pid="$1" stat rest
	stat="$(cat "/proc/$pid/stat")" || return 1
	rest="${stat##*) }" # after the command name, which may contain spaces
	# shellcheck disable=SC2086
	set -- $rest # $1 is field 3 (state): utime is field 14 = $12, stime field 15 = $13
	awk -v u="${12}" -v s="${13}" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f\n", (u + s) / hz }'
}

# RTP packets Janus has sent so far over all handles alive now (admin API handle_info,
# webrtc.media.*.stats.out.packets). Handles that are gone no longer count: read it while the
# sessions are up.
janus_egress_packets() {
	local sessions s h total=0 n
	sessions="$(curl -sS --max-time 5 -H 'content-type: application/json' \
		-d "{\"janus\":\"list_sessions\",\"transaction\":\"x\",\"admin_secret\":\"$JANUS_ADMIN_SECRET\"}" \
		"$JANUS_ADMIN_URL" | jq -r '.sessions[]?')"
	for s in $sessions; do
		for h in $(curl -sS --max-time 5 -d "{\"janus\":\"list_handles\",\"session_id\":$s,\"transaction\":\"x\",\"admin_secret\":\"$JANUS_ADMIN_SECRET\"}" \
			"$JANUS_ADMIN_URL" | jq -r '.handles[]?'); do
			n="$(curl -sS --max-time 5 -d "{\"janus\":\"handle_info\",\"transaction\":\"x\",\"admin_secret\":\"$JANUS_ADMIN_SECRET\"}" \
				"$JANUS_ADMIN_URL/$s/$h" | jq '[.info.webrtc.media[]?.stats.out.packets // 0] | add // 0')"
			total=$((total + n))
		done
	done
	echo "$total"
}

# Check the Janus API end to end with curl: create a session, attach the VideoRoom plugin, `list`
# shows room $JANUS_ROOM, `exists` says true; then destroy the session. Prints what it got.
janus_check() {
	local session handle out
	out="$(janus_post "" '{"janus":"create","transaction":"c1"}')" || return 1
	echo "create:  $out"
	session="$(jq -er '.data.id' <<<"$out")" || return 1
	out="$(janus_post "/$session" '{"janus":"attach","plugin":"janus.plugin.videoroom","transaction":"c2"}')" || return 1
	echo "attach:  $out"
	handle="$(jq -er '.data.id' <<<"$out")" || return 1
	out="$(janus_post "/$session/$handle" '{"janus":"message","transaction":"c3","body":{"request":"list"}}')" || return 1
	echo "list:    $out"
	jq -e --argjson room "$JANUS_ROOM" '.plugindata.data.list | any(.room == $room)' <<<"$out" >/dev/null ||
		{ echo "room $JANUS_ROOM is not in the list" >&2; return 1; }
	out="$(janus_post "/$session/$handle" "{\"janus\":\"message\",\"transaction\":\"c4\",\"body\":{\"request\":\"exists\",\"room\":$JANUS_ROOM}}")" || return 1
	echo "exists:  $out"
	jq -e '.plugindata.data.exists == true' <<<"$out" >/dev/null || { echo "room $JANUS_ROOM does not exist" >&2; return 1; }
	out="$(janus_post "/$session" '{"janus":"destroy","transaction":"c5"}')" || return 1
	echo "destroy: $out"
}
