#!/usr/bin/env bash
# Janus in a network namespace of its own, as loadtest/compare.sh runs it.
#
#   loadtest/janus/netns.sh            # start Janus, check its API with curl, stop it
#   loadtest/janus/netns.sh CMD ARGS   # start Janus, run CMD in the same namespace, stop Janus
#                                      # (e.g. `node loadtest/janus/e2e.mjs`)
#
# Re-executes itself under `unshare -n` (root, or `unshare -r -n` as a user) unless already in a
# private namespace; brings lo up, adds the veth jv0 with 127.0.0.2/32 (netns_up in lib.sh),
# starts Janus on core ${JANUS_CPU:-0}, and runs CMD on core ${CLIENT_CPU:-1}. Janus's output goes
# to ${JANUS_LOG:-/tmp/janus.log}. Exit status: CMD's (or the check's).
set -euo pipefail

if [[ "${SB_NETNS_CHILD:-}" != 1 ]]; then
	exec unshare -n env SB_NETNS_CHILD=1 bash "$0" "$@"
fi

# shellcheck source=loadtest/janus/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
netns_is_private || { echo "netns.sh: not in a private network namespace" >&2; exit 1; }
netns_up
trap janus_stop EXIT
janus_start "${JANUS_LOG:-/tmp/janus.log}"
echo "janus (pid $JANUS_PID, core ${JANUS_CPU:-0}) answers on $JANUS_URL; log ${JANUS_LOG:-/tmp/janus.log}" >&2
if [[ $# -eq 0 ]]; then
	janus_check
else
	status=0
	taskset -c "${CLIENT_CPU:-1}" "$@" || status=$?
	echo "janus used $(proc_cpu_seconds "$JANUS_PID") s of CPU" >&2
	exit "$status"
fi
