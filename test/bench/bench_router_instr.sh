#!/bin/sh
# Instructions and simulated L1d read misses per match of the router
# benchmark's workload, counted by callgrind (deterministic, unlike the
# timings):
#   test/bench/bench_router_instr.sh build/test/bench/bench_router [matches]
# Each size and topic set runs exactly <matches> matches (default 20000)
# between a callgrind zero and dump. The simulated caches are a 48 KiB
# 12-way L1d and a 4 MiB 16-way last level, 64-byte lines.
set -eu
bin=$1
n=${2:-20000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
valgrind --tool=callgrind --cache-sim=yes --D1=49152,12,64 \
  --LL=4194304,16,64 --callgrind-out-file="$dir/cg" "$bin" -i "$n" \
  >"$dir/log" 2>"$dir/err" || { cat "$dir/err"; exit 1; }
cat "$dir/log"
# Event order: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
for f in "$dir"/cg.*; do
  desc=$(sed -n 's/^desc: Trigger: Client Request: //p' "$f")
  [ -n "$desc" ] || continue
  echo "$desc $(sed -n 's/^totals: //p' "$f" | head -n 1)"
done | awk -v n="$n" '
  { k = $1 " " $2; ir[k] = $3 / n; d1[k] = $7 / n; ll[k] = $10 / n
    printf "%-7s %6s routes: %7.1f instructions, %5.2f L1d misses, %5.2f LL misses per match\n",
      $1, $2, ir[k], d1[k], ll[k] }
  END {
    printf "instructions 100k/100: hot %.2fx, spread %.2fx\n",
      ir["hot 100000"] / ir["hot 100"], ir["spread 100000"] / ir["spread 100"]
  }'
