#!/usr/bin/env bash
# Build every fuzz target and run each for a short time on the committed corpus, so that a change
# that makes a parser or the forwarding core panic (or break an invariant the targets assert)
# fails CI. The long runs are described in fuzz/README.md.
#
#   bash fuzz/ci.sh                # all targets, FUZZ_SECONDS (default 20) each
#   FUZZ_SECONDS=5 bash fuzz/ci.sh rtp rtcp
#
# Needs the nightly toolchain (libFuzzer's instrumentation); installs cargo-fuzz if missing.
# Builds go to FUZZ_TARGET_DIR (default ~/.cache/switchboard-ci/fuzz-target), never to the
# workspace's target directory. Runs under `nice`, one fuzzing process at a time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

seconds="${FUZZ_SECONDS:-20}"
jobs="${FUZZ_BUILD_JOBS:-2}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/switchboard-ci/fuzz-target}"
# The same build for every step, so `run` does not rebuild: release with debug assertions (and
# overflow checks), no sanitizer (safe Rust; see README.md).
build_flags=(--release --debug-assertions --sanitizer none)

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz/ci.sh: the nightly toolchain is missing (rustup toolchain install nightly --profile minimal)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    nice -n 19 cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "fuzz: building ${#targets[@]} targets"
CARGO_BUILD_JOBS="$jobs" nice -n 19 cargo +nightly fuzz build "${build_flags[@]}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
    # New inputs go to a scratch directory; the committed corpus is only read.
    mkdir -p "$work/$t" "$here/corpus/$t"
    echo "fuzz: $t for ${seconds}s"
    if ! nice -n 19 cargo +nightly fuzz run "${build_flags[@]}" "$t" "$work/$t" "$here/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$work/" >"$work/$t.log" 2>&1; then
        failed+=("$t")
        tail -n 60 "$work/$t.log"
        for a in "$work"/crash-* "$work"/timeout-* "$work"/oom-* "$work"/leak-*; do
            if [ -e "$a" ]; then echo "fuzz: $t: $(basename "$a"): $(base64 -w0 "$a")"; fi
        done
        rm -f "$work"/crash-* "$work"/timeout-* "$work"/oom-* "$work"/leak-*
    else
        echo "fuzz: $t ok: $(grep -E '^Done ' "$work/$t.log" || true)"
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (reproduce: cargo +nightly fuzz run ${build_flags[*]} <target> <file>)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without a crash"
