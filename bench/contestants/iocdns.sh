#!/usr/bin/env bash
# Contestant: iocdns (this repository) for the side-by-side rig in ../shared/bench
# (copy this file into the rig copy's contestants/ folder; bench/run-iocdns.sh does it).
#
# The 1M plain list is loaded as one `domains` feed with subdomains = true; BLOCK_MODE
# nxdomain -> action "nxdomain", null -> action "sinkhole" (0.0.0.0 / ::). Everything else is
# forwarded to the rig's upstream. Until the list is loaded it answers SERVFAIL
# (until_ready = "servfail"), so the rig's load time is start -> list in service.
# One worker thread like the peers: the rig pins us to one CPU (tokio then sizes its pool
# to 1 from the affinity mask) and TOKIO_WORKER_THREADS=1 makes that explicit.
#
# Knobs (environment):
#   IOCDNS_BIN         binary (default: `iocdns` on PATH, else ../release/iocdns relative to
#                      the rig, i.e. target/release/iocdns when the rig is target/bench-rig)
#   IOCDNS_COMMIT      commit shown by --version (run-iocdns.sh sets it; default: git of the
#                      binary's folder, "+dirty" when its tracked files differ from HEAD)
#   IOCDNS_EVENTS      all | matches | none   events.queries (default all); events go to
#                      $BENCH_WORKDIR/events/events.ndjson (deleted with the work folder unless KEEP_WORK=1)
#   IOCDNS_CACHE_SIZE  upstream.cache_size (default 400000: the whole benign set, A and AAAA,
#                      like the peers' caches that hold the working set)
#   IOCDNS_WORKERS     tokio worker threads (default 1)
#   IOCDNS_UDP_SOCKETS server.udp_sockets (SO_REUSEPORT sockets; builds from 493335d on; unset =
#                      the binary's default, 0 = one per available core = 1 under the rig's pinning)
#   IOCDNS_EXTRA_TOML  extra lines appended to the config (e.g. a [metrics] section)
#   IOCDNS_WRAP        optional command prefix, e.g. "perf record -g -o /tmp/x.data --"
#                      (profiling only: the rig then measures the wrapper's session)
#   RUST_LOG           passed through (default: iocdns' own default, info)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${IOCDNS_BIN:-}
if [[ -z "$bin" ]]; then
    bin=$(command -v iocdns || true)
    [[ -n "$bin" ]] || bin=$here/../release/iocdns
fi
if [[ "${1:-}" == --version ]]; then
    commit=${IOCDNS_COMMIT:-}
    if [[ -z "$commit" ]] && d=$(dirname "$bin") && git -C "$d" rev-parse --git-dir >/dev/null 2>&1; then
        commit=$(git -C "$d" rev-parse --short=12 HEAD)
        [[ -z "$(git -C "$d" status --porcelain --untracked-files=no 2>/dev/null)" ]] || commit+="+dirty"
    fi
    echo "$("$bin" --version | head -1)${commit:+ ($commit)}"
    exit 0
fi
[[ -x "$bin" ]] || { echo "iocdns binary not found: set IOCDNS_BIN" >&2; exit 2; }

case "${BENCH_BLOCK_MODE:-nxdomain}" in
    nxdomain) action=nxdomain ;;
    null) action=sinkhole ;;
    *) echo "iocdns contestant: unknown BLOCK_MODE=$BENCH_BLOCK_MODE" >&2; exit 3 ;;
esac
events=${IOCDNS_EVENTS:-all}
case "$events" in all | matches | none) ;; *) echo "IOCDNS_EVENTS must be all|matches|none" >&2; exit 3 ;; esac

conf=$BENCH_WORKDIR/iocdns.toml
cat >"$conf" <<CONF
[server]
listen = ["$BENCH_ADDR:$BENCH_PORT"]
allow = ["127.0.0.0/8", "::1/128"]
computer = "bench"
max_in_flight = 4096
until_ready = "servfail"
${IOCDNS_UDP_SOCKETS:+udp_sockets = $IOCDNS_UDP_SOCKETS}

[upstream]
servers = ["$BENCH_UPSTREAM_ADDR:$BENCH_UPSTREAM_PORT"]
timeout_ms = 2000
cache_size = ${IOCDNS_CACHE_SIZE:-400000}

[policy]
action = "$action"
sinkhole_ipv4 = "0.0.0.0"
sinkhole_ipv6 = "::"
subdomains = true

[[feeds]]
name = "bench-$BENCH_BL_SIZE"
path = "$BENCH_BL_PLAIN"
format = "domains"

[events]
path = "$BENCH_WORKDIR/events/events.ndjson"
queries = "$events"
${IOCDNS_EXTRA_TOML:-}
CONF
export TOKIO_WORKER_THREADS=${IOCDNS_WORKERS:-1}
# shellcheck disable=SC2086  # IOCDNS_WRAP is a word list on purpose
exec ${IOCDNS_WRAP:-} "$bin" -c "$conf" serve
