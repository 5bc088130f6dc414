#!/usr/bin/env bash
# Contestant: iocdns with events.queries = "none" (otherwise contestants/iocdns.sh), so that
# `run.sh iocdns iocdns-events-none` measures the cost of event writing side by side.
IOCDNS_EVENTS=none exec bash "$(dirname "$0")/iocdns.sh" "$@"
