#!/usr/bin/env bash
# Hot reload of a 1M-domain feed while dnsperf drives iocdns: every query must be answered and
# none delayed past 100 ms. Loopback only; everything is bounded in time.
#
#   bench/reload-under-load.sh            (after bench/run-iocdns.sh has generated the rig data)
#
# Knobs: RATE (dnsperf -Q, default 20000; "max" = no -Q, as fast as the -q 200 window allows,
# i.e. a saturating load), DURATION (s, default 30), RELOADS (default 4),
# IOCDNS_BIN (default target/release/iocdns), QUERIES (default mix), SERVER_CPU/LOADGEN_CPU.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RIG=${RIG:-$REPO/target/bench-rig}
BIN=${IOCDNS_BIN:-$REPO/target/release/iocdns}
RATE=${RATE:-20000}
DURATION=${DURATION:-30}
RELOADS=${RELOADS:-4}
QUERIES=${QUERIES:-mix}
SERVER_CPU=${SERVER_CPU:-1}
LOADGEN_CPU=${LOADGEN_CPU:-0}
LIST=$RIG/data/blocklist/1000000/plain.txt
rate_args=(-Q "$RATE")
[[ "$RATE" == max ]] && rate_args=()
[[ -f "$LIST" ]] || { echo "no rig data at $LIST: run bench/run-iocdns.sh first" >&2; exit 2; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Upstream: the rig's NSD on 127.0.0.1:5300.
mkdir -p "$work/nsd"
BENCH_UPSTREAM_ADDR=127.0.0.1 BENCH_UPSTREAM_PORT=5300 BENCH_WORKDIR=$work/nsd \
    BENCH_ZONE_DIR=$RIG/data/upstream taskset -c "$LOADGEN_CPU" bash "$RIG/upstream-nsd.sh" >"$work/nsd.log" 2>&1 &
pids+=($!)

cp "$LIST" "$work/list.txt"
cat >"$work/iocdns.toml" <<CONF
[server]
listen = ["127.0.0.1:5310"]
allow = ["127.0.0.0/8"]
[upstream]
servers = ["127.0.0.1:5300"]
cache_size = 400000
[policy]
action = "nxdomain"
[[feeds]]
name = "list"
path = "list.txt"
format = "domains"
[events]
path = "events.ndjson"
queries = "all"
CONF
TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CPU" "$BIN" -c "$work/iocdns.toml" serve >"$work/iocdns.log" 2>&1 &
pids+=($!)
last=$(tail -1 "$LIST")
for _ in $(seq 1 200); do
    dig @127.0.0.1 -p 5310 +tries=1 +time=1 "$last" A 2>/dev/null | grep -q NXDOMAIN && break
    sleep 0.1
done

# Warm-up (not measured): fills the response cache and NSD's, so the measured run sees the
# steady state plus the reloads, not the cold start.
taskset -c "$LOADGEN_CPU" timeout 30 dnsperf -s 127.0.0.1 -p 5310 -d "$RIG/data/queries/$QUERIES.txt" \
    -l 5 -c 4 -q 200 -t 2 "${rate_args[@]}" >/dev/null 2>&1 || true

# Reloads while the load runs: replace the feed by rename (as curl -o tmp && mv does).
(
    for i in $(seq 1 "$RELOADS"); do
        sleep $((DURATION / (RELOADS + 1)))
        cp "$LIST" "$work/list.new" && echo "reload$i.example" >>"$work/list.new" && mv "$work/list.new" "$work/list.txt"
    done
) &
pids+=($!)
( [[ -n "${PROBE:-}" ]] && python3 /tmp/probe.py $DURATION > "$work/probe.txt" 2>&1 ) &
pids+=($!)
taskset -c "$LOADGEN_CPU" timeout $((DURATION + 30)) dnsperf -s 127.0.0.1 -p 5310 -d "$RIG/data/queries/$QUERIES.txt" \
    -l "$DURATION" -c 4 -q 200 -t 2 "${rate_args[@]}" >"$work/dnsperf.txt" 2>&1 || true
grep -E "Queries sent|Queries completed|Queries lost|Queries per second|Average Latency|Latency StdDev" "$work/dnsperf.txt"
echo "reloads completed: $(grep -c 'policy reloaded' "$work/iocdns.log")"
grep 'policy reloaded' "$work/iocdns.log" | sed -e 's/.*took_ms=\([0-9]*\).*/  reload took \1 ms/'
[[ -n "${PROBE:-}" ]] && { cat "$work/probe.txt"; grep -E "policy reloaded|feed loaded|watched" "$work/iocdns.log" | cut -c12-23,30-80; }
