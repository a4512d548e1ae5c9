#!/usr/bin/env bash
# What bounds the QoS 1 round trip with TCP_NODELAY (docs/benchmarks.md,
# "What bounds the remaining gaps"): the peer harness's raw ceiling
# (raw_bench.c) beside two variants that each add one thing uvmqtt does,
# and uvmqtt itself, with the client and a private mosquitto pinned to
# one CPU, 50,000 round trips each (3 rounds, interleaved):
#
#   raw            blocking read(), as in the harness
#   raw+epoll      an epoll_wait() before each read (RAW_EPOLL=1)
#   raw+epoll+qa   and TCP_QUICKACK after a read of acknowledgements only
#                  (RAW_QA=1), as uvmqtt sends for a Nagle broker
#   uvmqtt         test/bench/uvmqtt_bench from $BUILD
#
# Prints p50, mean and the client's CPU (user + system seconds) per run.
# The variants are built in a scratch copy; the harness is never written.
#
#   scripts/rtt-bound.sh                 BENCH_PEERS, BUILD, COUNT, CPU
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${BENCH_PEERS:-$ROOT/../shared/bench-peers}
BUILD=${BUILD:-build-bench}
COUNT=${COUNT:-50000}
CPU=${CPU:-0}
UVB="$ROOT/$BUILD/test/bench/uvmqtt_bench"
[ -f "$PEERS/c/raw_bench.c" ] || { echo "no peer harness at $PEERS (set BENCH_PEERS)" >&2; exit 2; }
[ -x "$UVB" ] || { echo "build $UVB first (meson setup $BUILD --buildtype=release -Dbench=true)" >&2; exit 2; }
for t in mosquitto taskset cc python3 /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 2; }
done
W=$(mktemp -d "${TMPDIR:-/tmp}/uvmqtt-rtt.XXXXXX")
MPID=
cleanup() {
  [ -n "$MPID" ] && kill "$MPID" 2>/dev/null && wait "$MPID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

cp "$PEERS/c/raw_bench.c" "$PEERS/c/bench_common.h" "$W/"
python3 - "$W/raw_bench.c" <<'EOF'
import sys
p = sys.argv[1]
s = open(p).read()
def sub(old, new):
    global s
    if old not in s:
        sys.exit("raw_bench.c changed: cannot find %r" % old[:40])
    s = s.replace(old, new, 1)
sub('#include <sys/ioctl.h>', '''#include <sys/ioctl.h>
#include <sys/epoll.h>
static int ep_fd = -2;
static void ep_wait(int fd) {
  if (ep_fd == -2) {
    ep_fd = getenv("RAW_EPOLL") ? epoll_create1(0) : -1;
    if (ep_fd >= 0) {
      struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
      epoll_ctl(ep_fd, EPOLL_CTL_ADD, fd, &e);
    }
  }
  if (ep_fd < 0) return;
  struct epoll_event ev[8];
  while (epoll_wait(ep_fd, ev, 8, -1) < 0 && errno == EINTR) ;
}''')
sub('''        ssize_t r = read(fd, rbuf + rlen, rcap - rlen);''',
    '''        ep_wait(fd);
        ssize_t r = read(fd, rbuf + rlen, rcap - rlen);''')
sub('''        n_reads++;''', '''        n_reads++;
        { static int qa = -1;
          if (qa < 0) qa = getenv("RAW_QA") != NULL;
          /* a read of acknowledgements only: ACK it at once */
          if (qa && r <= 4 && (rbuf[rlen] >> 4) != 3) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
          } }''')
open(p, "w").write(s)
EOF
cc -O2 -std=gnu11 -o "$W/raw_bench" "$W/raw_bench.c"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$W/mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
set_tcp_nodelay true
max_inflight_messages 100
EOF
[ "$(id -u)" = 0 ] && echo "user root" >>"$W/mosquitto.conf"
taskset -c "$CPU" mosquitto -c "$W/mosquitto.conf" >"$W/mosquitto.log" 2>&1 &
MPID=$!
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

ARGS=(--host 127.0.0.1 --port "$PORT" --count "$COUNT" --size 64 --qos 1
      --mode rtt --topic bench/rtt --inflight 100 --timeout 60 --nodelay 1)
run() {
  local name=$1
  shift
  local out
  out=$(/usr/bin/time -f "cpu %U %S" taskset -c "$CPU" "$@" "${ARGS[@]}" 2>&1 || true)
  local p50 mean cpu
  p50=$(grep -o 'median_us=[0-9.]*' <<<"$out" | cut -d= -f2)
  mean=$(grep -o 'mean_us=[0-9.]*' <<<"$out" | cut -d= -f2)
  cpu=$(awk '/^cpu /{printf "%.2f", $2 + $3}' <<<"$out")
  printf '%-14s p50 %6s us  mean %6s us  client CPU %5s s\n' "$name" "$p50" "$mean" "$cpu"
}
echo "QoS 1 round trips, 64 B, TCP_NODELAY, client and mosquitto on CPU $CPU, $COUNT each"
for round in 1 2 3; do
  echo "round $round"
  run raw "$W/raw_bench"
  run raw+epoll env RAW_EPOLL=1 "$W/raw_bench"
  run raw+epoll+qa env RAW_EPOLL=1 RAW_QA=1 "$W/raw_bench"
  run uvmqtt "$UVB"
done
