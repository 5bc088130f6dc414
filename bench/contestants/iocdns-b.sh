#!/usr/bin/env bash
# Contestant: a second iocdns build for A/B runs (`run.sh iocdns iocdns-b`): the binary in
# $IOCDNS_BIN_B, everything else as contestants/iocdns.sh (same knobs).
: "${IOCDNS_BIN_B:?set IOCDNS_BIN_B to the second iocdns binary}"
IOCDNS_BIN=$IOCDNS_BIN_B IOCDNS_COMMIT=${IOCDNS_COMMIT_B:-} exec bash "$(dirname "$0")/iocdns.sh" "$@"
