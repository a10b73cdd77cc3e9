#!/usr/bin/env bash
# Batch throughput of the release binary on one core: every event under tests/cases/ and
# examples/events/, repeated to N events (default 20000), through `whyfail diagnose --batch`.
# Prints events/s and, when valgrind is installed and BENCH_CALLGRIND=1, instructions/event
# (stable on a noisy machine). Usage: scripts/bench-batch.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
bin=target/release/whyfail
[ -x "$bin" ] || cargo build --release -q
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$n" "$tmp/events.jsonl" <<'PY'
import json, pathlib, sys
n, out = int(sys.argv[1]), sys.argv[2]
events = []
for p in sorted(pathlib.Path("tests/cases").rglob("*.json")):
    events.append(json.dumps(json.loads(p.read_text())["event"]))
for p in sorted(pathlib.Path("examples/events").glob("*.json")):
    events.append(json.dumps(json.loads(p.read_text())))
with open(out, "w") as f:
    for i in range(n):
        f.write(events[i % len(events)] + "\n")
print(f"{len(events)} distinct events, {n} lines")
PY
start=$(date +%s.%N)
taskset -c 0 "$bin" diagnose --batch --offline "$tmp/events.jsonl" > "$tmp/out.jsonl" 2>/dev/null || "$bin" diagnose --batch --offline "$tmp/events.jsonl" > "$tmp/out.jsonl"
end=$(date +%s.%N)
lines=$(wc -l < "$tmp/out.jsonl")
python3 -c "import sys; s=$end-$start; print(f'{$lines} resolutions in {s:.2f} s: {$lines/s:,.0f} events/s on one core ({s/$lines*1e6:.1f} us/event, load included)')"
if [ "${BENCH_CALLGRIND:-0}" = 1 ] && command -v valgrind >/dev/null; then
  head -n 2000 "$tmp/events.jsonl" > "$tmp/small.jsonl"
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$bin" diagnose --batch --offline "$tmp/small.jsonl" > /dev/null 2> "$tmp/vg.txt"
  ir=$(grep -o 'refs: *[0-9,]*' "$tmp/vg.txt" | tr -dc 0-9)
  python3 -c "print(f'callgrind: {$ir/2000:,.0f} instructions per event (2000 events, load included)')"
fi
