#!/usr/bin/env bash
# Compares the batch speed of two or more whyfail binaries on a shared, noisy machine: runs them
# in alternation ROUNDS times on the same workload and prints, per binary, the min and median
# of CPU time (user+sys) and wall time, and the peak RSS. One run each says little when other
# tenants take a core now and then; alternating runs see the same noise, and the min shows
# what each binary costs when undisturbed.
#
# Usage: scripts/bench-compare.sh BIN_A BIN_B [BIN...]
#   env: ROUNDS (5), JOBS (1), N (20000 events, made by scripts/bench-events.py),
#        CORPUS=DIR (default /work/shared/corpus/public; tests/cases alone without it)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 BIN_A BIN_B [BIN...]" >&2; exit 2; }
rounds=${ROUNDS:-5}
jobs=${JOBS:-1}
n=${N:-20000}
corpus=${CORPUS:-/work/shared/corpus/public}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 scripts/bench-events.py "$n" "$tmp/events.jsonl" "$corpus"
for _ in $(seq "$rounds"); do
  for bin in "$@"; do
    /usr/bin/time -f "%U %S %e %M" -o "$tmp/time" \
      "$bin" diagnose --batch --offline --jobs "$jobs" "$tmp/events.jsonl" > /dev/null
    echo "$bin $(cat "$tmp/time")"
  done
done | python3 -c "
import statistics, sys
runs = {}
for line in sys.stdin:
    name, user, sys_, wall, rss = line.split()
    runs.setdefault(name, []).append((float(user) + float(sys_), float(wall), int(rss)))
for name, rs in runs.items():
    cpu = [r[0] for r in rs]; wall = [r[1] for r in rs]
    print(f'{name} (--jobs $jobs, $n events, {len(rs)} runs): CPU min {min(cpu):.2f} median {statistics.median(cpu):.2f} s '
          f'({$n / min(cpu):,.0f} events per CPU-second at best); wall min {min(wall):.2f} median {statistics.median(wall):.2f} s; '
          f'peak RSS {max(r[2] for r in rs) / 1024:.1f} MB')
"
