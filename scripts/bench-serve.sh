#!/usr/bin/env bash
# Load benchmark of `whyfail serve` on the offline path: builds the release binary, starts the
# server on a random loopback port (offline, with a token), and drives POST /v1/diagnose with an
# example event through wrk (installed with apt-get when missing and running as root), else a
# small Python keep-alive client. Prints diagnoses/s and p50/p99 latency; fails if any answer
# is not 200.
#
# With RATE=N, the load is instead a fixed N requests/s through oha (`cargo install oha`; not in
# Debian), latency measured from when each request was due (`--latency-correction`, so a slow
# answer also counts against the requests queued behind it): the p99-at-5,000-req/s figure.
#
# Usage: scripts/bench-serve.sh [DURATION_S (10)] [CONNECTIONS (16)] [EVENT (examples/events/refresh_token_expired.json)]
# Honours CARGO_TARGET_DIR; WHYFAIL_BIN=path skips the build. Only loopback traffic; the run
# is bounded by DURATION_S.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
conns=${2:-16}
event=${3:-examples/events/refresh_token_expired.json}
if [ -n "${WHYFAIL_BIN:-}" ]; then
  bin=$WHYFAIL_BIN   # an already built binary (skips the build)
else
  cargo build --release -q --bin whyfail
  bin="${CARGO_TARGET_DIR:-target}/release/whyfail"
fi
tmp=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

token="bench-$$-$RANDOM"
# Concurrency above the connection count so the benchmark measures diagnoses, not shedding.
WHYFAIL_TOKEN="$token" RUST_LOG=warn "$bin" serve --listen 127.0.0.1:0 --offline \
  --concurrency $((conns * 2)) > "$tmp/out" 2> "$tmp/log" &
server_pid=$!
for _ in $(seq 1 200); do   # the start-up line, complete with its newline
  [ "$(wc -l < "$tmp/out")" -ge 1 ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/log"; exit 1; }
  sleep 0.05
done
addr=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["listening"])' "$tmp/out")
url="http://$addr/v1/diagnose"
status=$(curl -s -o "$tmp/first.json" -w '%{http_code}' -H "authorization: Bearer $token" \
  -H 'content-type: application/json' --data-binary @"$event" "$url")
[ "$status" = 200 ] || { echo "warm-up request answered $status: $(cat "$tmp/first.json")"; exit 1; }
echo "server $addr ($(nproc) cores shared by server and client), event $event, ${duration}s, $conns connections"

if [ -n "${RATE:-}" ]; then
  command -v oha >/dev/null || { echo "RATE needs oha: cargo install oha" >&2; exit 2; }
  oha --no-tui --output-format json -z "${duration}s" -c "$conns" -q "$RATE" --latency-correction \
    -m POST -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -D "$event" "$url" > "$tmp/oha.json"
  [ -n "${OHA_JSON:-}" ] && cp "$tmp/oha.json" "$OHA_JSON"
  python3 - "$tmp/oha.json" "$RATE" <<'PY'
import json, sys
r, rate = json.load(open(sys.argv[1])), int(sys.argv[2])
s, p, codes = r["summary"], r["latencyPercentiles"], r.get("statusCodeDistribution", {})
n = sum(codes.values())
# Requests still in flight when the duration ends are cut by oha itself, not refused.
errors = {k: v for k, v in r.get("errorDistribution", {}).items() if k != "aborted due to deadline"}
bad = n - codes.get("200", 0) + sum(errors.values())
print(f"oha at a fixed {rate:,} req/s: {n:,} answered in {s['total']:.1f} s ({s['requestsPerSec']:,.0f}/s); "
      f"latency from when each request was due: p50 {p['p50'] * 1000:.2f} ms, p99 {p['p99'] * 1000:.2f} ms, "
      f"max {s['slowest'] * 1000:.2f} ms; {bad} errors/non-200")
sys.exit(1 if bad else 0)
PY
  exit $?
fi

if ! command -v wrk >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q wrk >/dev/null 2>&1; } || true
fi

if command -v wrk >/dev/null; then
  python3 - "$event" "$token" > "$tmp/post.lua" <<'PY'
import json, sys
body = json.dumps(json.load(open(sys.argv[1])))
print('wrk.method = "POST"')
print(f'wrk.body = {json.dumps(body)}')
print('wrk.headers["content-type"] = "application/json"')
print(f'wrk.headers["authorization"] = "Bearer {sys.argv[2]}"')
print('''
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.3f %.3f %.3f\\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000))
end''')
PY
  threads=$(( conns < 2 ? conns : 2 ))
  wrk -t"$threads" -c"$conns" -d"${duration}s" --latency -s "$tmp/post.lua" "$url" > "$tmp/wrk.txt"
  read -r n errors us p50 p99 mean < <(grep '^RESULT' "$tmp/wrk.txt" | cut -d' ' -f2-)
  client="wrk $( (wrk --version 2>&1 || true) | head -n1 | awk '{print $2}')"
else
  python3 - "$url" "$token" "$event" "$duration" "$conns" > "$tmp/py.txt" <<'PY'
import http.client, json, sys, threading, time, urllib.parse
url, token, event, duration, conns = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
u = urllib.parse.urlparse(url)
body = json.dumps(json.load(open(event))).encode()
lat, errors, lock = [], [0], threading.Lock()
end = time.time() + duration
def worker():
    c = http.client.HTTPConnection(u.hostname, u.port)
    mine, bad = [], 0
    while time.time() < end:
        t = time.perf_counter()
        c.request("POST", u.path, body, {"authorization": f"Bearer {token}", "content-type": "application/json"})
        r = c.getresponse(); r.read()
        mine.append(time.perf_counter() - t)
        bad += r.status != 200
    with lock:
        lat.extend(mine); errors[0] += bad
ts = [threading.Thread(target=worker) for _ in range(conns)]
start = time.time(); [t.start() for t in ts]; [t.join() for t in ts]
took = time.time() - start
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
print(len(lat), errors[0], int(took * 1e6), f"{pick(0.5):.3f}", f"{pick(0.99):.3f}", f"{sum(lat) / len(lat) * 1000:.3f}")
PY
  read -r n errors us p50 p99 mean < "$tmp/py.txt"
  client="python http.client (wrk not available)"
fi

python3 - "$n" "$errors" "$us" "$p50" "$p99" "$mean" "$client" <<'PY'
import sys
n, errors, us = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
p50, p99, mean, client = float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), sys.argv[7]
print(f"{client}: {n:,} diagnoses in {us / 1e6:.1f} s = {n / (us / 1e6):,.0f} diagnoses/s; "
      f"latency p50 {p50:.2f} ms, p99 {p99:.2f} ms, mean {mean:.2f} ms; {errors} errors/non-200")
sys.exit(1 if errors else 0)
PY
