#!/usr/bin/env bash
# Batch throughput of the release binary (`whyfail diagnose --batch --offline`), whole process
# (start and library load included), on the issue-15 workload: N events (default 20000) made by
# cycling the events of the public corpus (/work/shared/corpus/public, or $CORPUS; each file's
# "event") followed by those of tests/cases/**.json, files in sorted order. Without the corpus
# (a checkout on its own) the tests/cases events alone are cycled (scripts/bench-events.py).
#
# Prints, per --jobs setting (default "1 0"; 0 = every core):
#   events per CPU-second (user+sys), wall events/s, peak RSS;
# and once, instructions per event from callgrind (stable on a busy machine): the first 2000
# events with and without the load (a single event's run), and events 2001-4000 (steady state:
# regexes compiled, lazy DFA caches warm), when valgrind is installed (BENCH_CALLGRIND=0 skips).
# Usage: scripts/bench-batch.sh [N]    env: JOBS="1 2", CORPUS=DIR, BIN=path
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
bin=${BIN:-target/release/whyfail}
corpus=${CORPUS:-/work/shared/corpus/public}
[ -x "$bin" ] || cargo build --release -q
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 scripts/bench-events.py "$n" "$tmp/events.jsonl" "$corpus"
for jobs in ${JOBS:-1 0}; do
  flag=()
  [ "$jobs" != 0 ] && flag=(--jobs "$jobs")
  /usr/bin/time -f "%e %U %S %M" -o "$tmp/time" \
    "$bin" diagnose --batch --offline "${flag[@]}" "$tmp/events.jsonl" > "$tmp/out.jsonl"
  lines=$(wc -l < "$tmp/out.jsonl")
  read -r wall user sys rss < "$tmp/time"
  python3 -c "
wall, cpu, rss, lines = $wall, $user + $sys, $rss, $lines
print(f'--jobs ${jobs/#0/all}: {lines} resolutions; {lines/cpu:,.0f} events per CPU-second ({cpu:.2f} CPU-s), '
      f'{lines/wall:,.0f} events/s wall ({wall:.2f} s), peak RSS {rss/1024:.1f} MB')"
done
if [ "${BENCH_CALLGRIND:-1}" = 1 ] && command -v valgrind >/dev/null; then
  head -n 1 "$tmp/events.jsonl" > "$tmp/one.jsonl"
  head -n 2000 "$tmp/events.jsonl" > "$tmp/small.jsonl"
  head -n 4000 "$tmp/events.jsonl" > "$tmp/double.jsonl"
  ir() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" diagnose --batch --offline \
      --jobs 1 "$1" 2>&1 > /dev/null | grep -o 'refs: *[0-9,]*' | tr -dc 0-9
  }
  one=$(ir "$tmp/one.jsonl")
  small=$(ir "$tmp/small.jsonl")
  double=$(ir "$tmp/double.jsonl")
  python3 -c "
one, small, double = $one, $small, $double
print(f'callgrind: start + load + one event {one/1e6:,.0f} M instructions; per event: '
      f'{small/2000:,.0f} over the first 2000 events with the load, {(small-one)/1999:,.0f} without it '
      f'(first use of each event and regex), {(double-small)/2000:,.0f} over events 2001-4000 (steady state)')"
fi
