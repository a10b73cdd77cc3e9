#!/usr/bin/env bash
# Two `whyfail serve` replicas with live checks, with and without `--shared-state` (a
# redis-server of their own on a random loopback port, no persistence), against a fake GitHub
# `/user` on loopback that answers after a delay and counts requests. Requests go to the
# replicas in turn, or through nginx with deploy/nginx.conf when nginx is installed (the
# upstream names rewritten to the replicas' loopback addresses). Prints, per mode: requests,
# failures, whoami requests the provider saw, probes per replica, facts read from the other
# replica, and latency p50/p99.
#
# Usage: scripts/bench-replicas.sh [REQUESTS (2000)] [PARALLEL (32)] [CONNECTIONS (20)] [DELAY_MS (150)]
# CONNECTIONS distinct connection ids share the burst. WHYFAIL_BIN=path skips the build.
# Needs redis-server (apt-get install redis-server); only loopback traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-2000}
parallel=${2:-32}
conns=${3:-20}
delay_ms=${4:-150}
if [ -n "${WHYFAIL_BIN:-}" ]; then
  bin=$WHYFAIL_BIN
else
  cargo build --release -q --bin whyfail
  bin="${CARGO_TARGET_DIR:-target}/release/whyfail"
fi
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)"; exit 1; }
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
token="bench-$$-$RANDOM"

# The fake provider: GitHub's /user with the scopes header, after DELAY_MS; counts requests.
fake_port=$(free_port)
python3 - "$fake_port" "$delay_ms" "$tmp/fake.count" <<'PY' &
import http.server, json, sys, threading, time
port, delay, out = int(sys.argv[1]), int(sys.argv[2]) / 1000, sys.argv[3]
n, lock = [0], threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/count":
            body = str(n[0]).encode()
        else:
            with lock:
                n[0] += 1
            time.sleep(delay)
            body = json.dumps({"login": "octocat"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-oauth-scopes", "read:org")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
pids+=($!)

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no > "$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && curl -s "http://127.0.0.1:$fake_port/count" >/dev/null && break
  sleep 0.05
done

# These start background processes, so they set `addr` rather than print (a command
# substitution would run them in a subshell that loses track of them).
start_replica() { # NAME [--shared-state URL] -> addr
  local name=$1; shift
  WHYFAIL_TOKEN="$token" RUST_LOG=warn "$bin" serve --listen 127.0.0.1:0 --allow-host 127.0.0.1 \
    --no-watch --concurrency 256 "$@" > "$tmp/$name.out" 2> "$tmp/$name.log" &
  pids+=($!)
  for _ in $(seq 1 200); do
    [ -f "$tmp/$name.out" ] && [ "$(wc -l < "$tmp/$name.out")" -ge 1 ] && break
    sleep 0.05
  done
  addr=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["listening"])' "$tmp/$name.out")
}

start_nginx() { # ADDR_A ADDR_B -> addr: the LB address, or empty without nginx
  addr=""
  command -v nginx >/dev/null || return 0
  local port; port=$(free_port)
  mkdir -p "$tmp/nginx"
  sed -e "s/whyfail-1:8080/$1/; s/whyfail-2:8080/$2/; s/listen 8080;/listen 127.0.0.1:$port;/" \
      -e "s|^worker_processes auto;|worker_processes 1; pid $tmp/nginx/pid; error_log $tmp/nginx/error.log;|" \
      deploy/nginx.conf > "$tmp/nginx/nginx.conf"
  nginx -t -q -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" || { echo "deploy/nginx.conf does not pass nginx -t" >&2; return 1; }
  nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' 2>/dev/null &
  pids+=($!)
  sleep 0.3
  addr="127.0.0.1:$port"
}

run_mode() { # LABEL [replica args...]
  local label=$1; shift
  local a b lb targets
  start_replica "$label-a" "$@"; a=$addr
  start_replica "$label-b" "$@"; b=$addr
  start_nginx "$a" "$b"; lb=$addr
  targets="$a,$b"
  [ -n "$lb" ] && targets="$lb"
  local before
  before=$(curl -s "http://127.0.0.1:$fake_port/count")
  python3 - "$targets" "$token" "$requests" "$parallel" "$conns" "http://127.0.0.1:$fake_port" "$label" <<'PY'
import http.client, json, sys, threading, time
targets, token, n, par, conns, base, label = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
def event(i):
    return json.dumps({
        "event_id": f"bench-{i}", "occurred_at": "2026-11-23T10:00:00Z", "phase": "request",
        "error": {"kind": "http", "status": 403, "message": "Resource not accessible by integration"},
        "connection": {"id": f"conn_{label}_{i % conns}", "provider": "github", "auth_type": "oauth2",
                       "base_url": base, "required_scopes": ["repo", "read:org"],
                       "secrets": {"access_token": "gho_bench_secret_0123456789"}}}).encode()
lat, bad, lock, nxt = [], [0], threading.Lock(), [0]
def worker(k):
    cs = {t: http.client.HTTPConnection(*t.split(":")) for t in targets}
    while True:
        with lock:
            i = nxt[0]; nxt[0] += 1
        if i >= n:
            return
        t = targets[i % len(targets)]
        t0 = time.perf_counter()
        try:
            c = cs[t]
            c.request("POST", "/v1/diagnose", event(i), {"authorization": f"Bearer {token}", "content-type": "application/json"})
            r = c.getresponse(); body = r.read()
            ok = r.status == 200 and b"scope_missing" in body
        except Exception:
            ok = False
            cs[t] = http.client.HTTPConnection(*t.split(":"))
        dt = time.perf_counter() - t0
        with lock:
            lat.append(dt)
            bad[0] += 0 if ok else 1
t0 = time.perf_counter()
ths = [threading.Thread(target=worker, args=(k,)) for k in range(par)]
[t.start() for t in ths]; [t.join() for t in ths]
wall = time.perf_counter() - t0
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
print(f"RESULT {len(lat)} {bad[0]} {wall:.2f} {q(0.5):.1f} {q(0.99):.1f}")
PY
  local after
  after=$(curl -s "http://127.0.0.1:$fake_port/count")
  metric() { curl -s -H "authorization: Bearer $token" "http://$1/metrics" | awk -v m="$2" '$1==m {print $2}'; }
  local via="round-robin"
  [ -n "$lb" ] && via="nginx"
  echo "mode=$label via=$via whoami_requests=$((after - before)) (for $conns connections)" \
       "probes a=$(metric "$a" whyfail_probe_calls_total) b=$(metric "$b" whyfail_probe_calls_total)" \
       "from_other_replica a=$(metric "$a" whyfail_probe_shared_answers_total) b=$(metric "$b" whyfail_probe_shared_answers_total)" \
       "fact_requests a=$(metric "$a" whyfail_fact_requests_total) b=$(metric "$b" whyfail_fact_requests_total)"
}

echo "$(nproc) cores shared by everything; $requests requests, $parallel in parallel, $conns connections, provider delay ${delay_ms} ms"
echo "RESULT fields: requests failed wall_s p50_ms p99_ms"
run_mode local
run_mode shared --shared-state "redis://127.0.0.1:$redis_port/0"
