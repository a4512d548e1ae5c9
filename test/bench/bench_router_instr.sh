#!/bin/sh
# Instructions per match of the router benchmark's workload, counted by
# callgrind (deterministic, unlike the timings):
#   test/bench/bench_router_instr.sh build/test/bench/bench_router [matches]
# Each size and topic set runs exactly <matches> matches (default 20000)
# between a callgrind zero and dump; the dump's total, divided, is printed.
set -eu
bin=$1
n=${2:-20000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$dir/cg" "$bin" -i "$n" \
  >"$dir/log" 2>"$dir/err" || { cat "$dir/err"; exit 1; }
cat "$dir/log"
for f in "$dir"/cg.*; do
  desc=$(sed -n 's/^desc: Trigger: Client Request: //p' "$f")
  [ -n "$desc" ] || continue
  tot=$(sed -n 's/^totals: //p;s/^summary: //p' "$f" | head -n 1)
  echo "$desc $tot"
done | awk -v n="$n" '
  { ipm[$1 " " $2] = $3 / n; print $1, $2, "routes:", $3 / n, "instructions/match" }
  END {
    printf "hot 100k/100: %.2fx   spread 100k/100: %.2fx\n",
      ipm["hot 100000"] / ipm["hot 100"], ipm["spread 100000"] / ipm["spread 100"]
  }'
