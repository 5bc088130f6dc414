#!/usr/bin/env bash
# Run iocdns in the shared side-by-side rig (../shared/bench) against the peer resolvers.
#
#   bench/run-iocdns.sh [CONTESTANT ...]     default: iocdns unbound dnsmasq
#
# 1. copies the rig's scripts to target/bench-rig (git-ignored; its generated data/ is kept
#    between runs), 2. installs bench/contestants/iocdns.sh there, 3. picks the iocdns binary,
#    4. installs the rig's packages / hickory peer / data if missing, 5. runs the rig's run.sh
#    with the arguments and environment given (REPEATS, DURATION, SCENARIOS, SIZES, MODE,
#    BLOCK_MODE, OUT, ... see the rig's README.md; OUT is relative to target/bench-rig).
#
# Which iocdns is measured:
#   IOCDNS_BIN=/path/to/iocdns        that binary (its commit is taken from its folder's git)
#   IOCDNS_REF=<commit|branch>        build that commit in a detached worktree (IOCDNS_WORKTREE,
#                                     default ../iocdns-bench next to the repo) and measure it;
#                                     the working tree of the repo is never touched
#   neither                           target/release/iocdns of this repo (built if missing)
# Other knobs: RIG_SRC (default ../shared/bench), RIG (default target/bench-rig),
# IOCDNS_EVENTS / IOCDNS_CACHE_SIZE / IOCDNS_WORKERS (see contestants/iocdns.sh).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RIG_SRC=${RIG_SRC:-$REPO/../shared/bench}
RIG=${RIG:-$REPO/target/bench-rig}
log() { printf '[run-iocdns %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -f "$RIG_SRC/run.sh" ]] || die "rig not found at $RIG_SRC (set RIG_SRC)"
(($#)) || set -- iocdns unbound dnsmasq

# 1+2. rig scripts (not its data/) + our contestant
mkdir -p "$RIG/contestants"
for f in "$RIG_SRC"/*; do
    [[ "$(basename "$f")" == data ]] && continue
    cp -r "$f" "$RIG/"
done
chmod -R u+w "$RIG"
install -m 755 "$REPO"/bench/contestants/*.sh "$RIG/contestants/"

# 3. the binary
needs_iocdns=0
for c in "$@"; do [[ "${c%%:*}" == iocdns* ]] && needs_iocdns=1; done
if ((needs_iocdns)); then
    if [[ -n "${IOCDNS_BIN:-}" ]]; then
        :
    elif [[ -n "${IOCDNS_REF:-}" ]]; then
        wt=${IOCDNS_WORKTREE:-$REPO/../iocdns-bench}
        if [[ ! -e "$wt/.git" ]]; then
            git -C "$REPO" worktree add --detach "$wt" "$IOCDNS_REF"
        else
            git -C "$wt" checkout --detach "$IOCDNS_REF"
        fi
        log "building $(git -C "$wt" rev-parse --short=12 HEAD) in $wt"
        (cd "$wt" && cargo build --release --locked)
        IOCDNS_BIN=$(cd "$wt" && pwd)/target/release/iocdns
    else
        IOCDNS_BIN=$REPO/target/release/iocdns
        [[ -x "$IOCDNS_BIN" ]] || (cd "$REPO" && cargo build --release --locked)
    fi
    [[ -x "$IOCDNS_BIN" ]] || die "no iocdns binary at $IOCDNS_BIN"
    export IOCDNS_BIN
    if [[ -z "${IOCDNS_COMMIT:-}" ]]; then
        d=$(dirname "$IOCDNS_BIN")
        if git -C "$d" rev-parse --git-dir >/dev/null 2>&1; then
            IOCDNS_COMMIT=$(git -C "$d" rev-parse --short=12 HEAD)
            [[ -z "$(git -C "$d" status --porcelain --untracked-files=no)" ]] || IOCDNS_COMMIT+="+dirty"
            export IOCDNS_COMMIT
        fi
    fi
    log "iocdns: $IOCDNS_BIN ($("$IOCDNS_BIN" --version) ${IOCDNS_COMMIT:-commit unknown})"
fi

# 4. packages, optional hickory peer, data
cd "$RIG"
command -v dnsperf >/dev/null && command -v nsd >/dev/null || ./setup.sh
for c in "$@"; do
    if [[ "${c%%:*}" == hickory && ! -x data/peers/bin/hickory-dns && -z "${HICKORY_DNS:-}" ]]; then
        WITH_HICKORY=1 ./setup.sh
    fi
done
python3 gen.py   # no-op when data/ is up to date

# 5. run, with a monitor of the CPU used by other work on the machine (cpu-monitor.py)
quiet() {  # bounded wait for an idle machine (WAIT_QUIET seconds below QUIET_PCT %)
    ((${WAIT_QUIET:-0} > 0)) || return 0
    log "waiting up to ${QUIET_TIMEOUT:-900}s for ${WAIT_QUIET}s with < ${QUIET_PCT:-15}% busy CPU"
    python3 "$REPO/bench/cpu-monitor.py" wait-quiet --seconds "$WAIT_QUIET" \
        --timeout "${QUIET_TIMEOUT:-900}" --below "${QUIET_PCT:-15}" || log "machine still busy; running anyway"
}
export OUT=${OUT:-data/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
python3 "$REPO/bench/cpu-monitor.py" watch --root $$ --out "$OUT/cpu-monitor.tsv" --max-seconds 21600 &
MON_PID=$!
trap 'kill "$MON_PID" 2>/dev/null || true' EXIT
MON=$(cd "$OUT" && pwd)/cpu-monitor.tsv
rc=0
parts=()
if [[ "${SPLIT:-0}" == 1 ]]; then
    # One run.sh per (repeat, scenario), each after a quiet wait, so that a burst of other work
    # spoils one part, not the whole run. Order alternates per repeat (A B C / C B A).
    rev=(); for ((i = $# - 1; i >= 0; i--)); do rev+=("${@:i+1:1}"); done
    mode=${MODE:-all}
    if [[ "$mode" == all || "$mode" == scale ]]; then
        quiet
        log "part scale: run.sh $*"
        OUT=$OUT/scale MODE=scale ./run.sh "$@" || rc=$?
        parts+=("$OUT/scale")
    fi
    if [[ "$mode" == all || "$mode" == qps ]]; then
        for ((rep = 1; rep <= ${REPEATS:-3}; rep++)); do
            for scen in ${SCENARIOS:-mix@2000 mix@max blocked@max hot@max}; do
                order=("$@"); ((rep % 2 == 1)) || order=("${rev[@]}")
                part=$OUT/r$rep-${scen//@/_}
                quiet
                log "part $part: run.sh ${order[*]}"
                OUT=$part MODE=qps REPEATS=1 SCENARIOS=$scen ./run.sh "${order[@]}" || rc=$?
                parts+=("$part")
            done
        done
    fi
else
    quiet
    log "rig: $RIG; OUT=$OUT; run.sh $*"
    ./run.sh "$@" || rc=$?
    parts=("$OUT")
fi
kill "$MON_PID" 2>/dev/null || true
wait "$MON_PID" 2>/dev/null || true

# 6. annotate: foreign CPU per dnsperf run; summaries of all trials and of the undisturbed ones
: >"$OUT/disturbance.md"
: >"$OUT/clean.jsonl"
all=()
for p in "${parts[@]}"; do
    [[ -f "$p/results.jsonl" ]] || continue
    all+=("$p/results.jsonl")
    python3 "$REPO/bench/cpu-monitor.py" annotate "$p" --monitor "$MON" >>"$OUT/disturbance.md" || true
    python3 "$REPO/bench/cpu-monitor.py" filter "$p" --monitor "$MON" --max-foreign "${CLEAN_PCT:-25}" >>"$OUT/clean.jsonl" || true
done
if ((${#all[@]})); then
    if [[ "${SPLIT:-0}" == 1 ]]; then
        python3 report.py summary "${all[@]}" --machine "${parts[0]}/machine.txt" >"$OUT/summary.md" || true
    fi
    python3 report.py summary "$OUT/clean.jsonl" >"$OUT/summary-clean.md" || true
    log "foreign CPU per dnsperf run: $OUT/disturbance.md"
    log "all trials: $OUT/summary.md; only runs with < ${CLEAN_PCT:-25}% foreign CPU: $OUT/summary-clean.md"
fi
exit "$rc"
