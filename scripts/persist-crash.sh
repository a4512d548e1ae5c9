#!/usr/bin/env bash
# The full crash test of persistence (the CI runs a smaller one): a
# publisher and a persistent-session subscriber with stores, QoS 1 and QoS 2
# streams of 10,000 messages, each process killed with SIGKILL 20 times at
# random moments and restarted from its store. Prints one line per run:
# messages lost and delivered more than once.
#
#   scripts/persist-crash.sh [build dir] [messages] [kills] [rounds]
#
# Defaults: build, 10000, 20, 1. Needs mosquitto (as the tests do).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build}
export UVMQTT_CRASH_COUNT=${2:-10000}
export UVMQTT_CRASH_KILLS=${3:-20}
ROUNDS=${4:-1}
export UVMQTT_CRASH_PEER=$BUILD/test/client/persist_crash_peer
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin:/sbin ;; esac
TEST=$BUILD/test/client/test_persist_crash
[ -x "$TEST" ] || { echo "build first: $TEST is missing" >&2; exit 1; }
status=0
for ((r = 1; r <= ROUNDS; r++)); do
  for t in persist_crash_q1 persist_crash_q2_pub persist_crash_q2_both \
    persist_crash_q2_manual persist_crash_q2_first persist_crash_q1_v5 \
    persist_crash_q2_v5; do
    out=$("$TEST" "$t" 2>&1) || status=1
    grep -E '^QoS [12]:|^late|^record first|\[  (FAILED|ERROR)|LINE' <<<"$out" || true
  done
done
exit $status
