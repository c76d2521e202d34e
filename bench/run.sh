#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# make bench / make soak: run the benchmarks in order, each printing its
# detail lines and one result line "<name>: <figures> ... ratio=<x>".
#
#   bench/run.sh bench   recorder, producer, workload, decoder, scale, fleet, host (< 10 min)
#   bench/run.sh soak    soak (10 min by default)
#
# Parameters (environment): DECODER_SIZE (default 1G), FLEET_EVENTS (100M),
# SOAK_SECONDS (600), SOAK_RATE (1000000). Quick run:
# DECODER_SIZE=64M FLEET_EVENTS=10M bench/run.sh bench
set -u
here=$(cd "$(dirname "$0")" && pwd)
py=${PY:-$here/../.venv/bin/python}
cd "$here/.."

# What only the benchmarks need: libbpf for the C ring-buffer peer (recorder).
./setup.sh --packages libbpf-dev || exit 1
"$py" -c 'import sys; sys.path.insert(0, "bench"); import common; print("machine:", common.machine())'
status=0
run() {
    local t=$SECONDS
    echo "== $1"
    "$py" "bench/$1.py" "${@:2}" || { echo "$1: FAILED (exit $?)"; status=1; }
    echo "== $1: $((SECONDS - t)) s"
}
case "${1:-bench}" in
bench)
    run recorder
    run producer
    run workload
    run decoder --size "${DECODER_SIZE:-1G}"
    run scale
    run fleet --events "${FLEET_EVENTS:-100M}"
    run host
    ;;
soak)
    run soak --seconds "${SOAK_SECONDS:-600}" --rate "${SOAK_RATE:-1000000}"
    ;;
*)
    echo "usage: $0 bench|soak" >&2
    exit 2
    ;;
esac
echo "== all: $SECONDS s"
exit $status
