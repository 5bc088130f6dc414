#!/usr/bin/env bash
# Contestant: iocdns with events.queries = "matches" (otherwise contestants/iocdns.sh), so that
# `run.sh iocdns iocdns-events-matches` measures the cost of event writing side by side.
IOCDNS_EVENTS=matches exec bash "$(dirname "$0")/iocdns.sh" "$@"
