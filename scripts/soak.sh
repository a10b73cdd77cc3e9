#!/usr/bin/env bash
# Soak test of `whyfail serve` (issue 13, item 8): runs the server for DURATION_S (default 1800)
# under a steady mix of valid, invalid and hostile requests and hot reloads, samples its RSS
# every 5 s, and prints the figures and whether they hold the bound:
#
#   peak RSS <= SOAK_MAX_RSS_MB (300), RSS growth over the last 10 minutes (or the last third of a
#   shorter run) <= SOAK_MAX_GROWTH_MB (20), no transport error on a valid request, every answer
#   with the status its kind expects, and the server still up at the end.
#
# The mix, from a few client threads (a modest rate: the soak measures drift, not throughput):
#   valid    single diagnoses of the example events, JSON and JSON Lines batches, /healthz, /metrics
#            (a diagnosis may be shed with 503 or time out with 504 while the hostile requests
#            hold the slots and the CPU: their share is reported);
#   invalid  broken JSON, a wrong token, an oversized body (413; a reset while uploading it is
#            counted, not failed), an unknown route, a bad query;
#   hostile  a playbook that burns CPU past --request-timeout (504, its work stopped), floods that
#            take every diagnosis slot (503 + Retry-After; 6 at once for --concurrency 4), 100 KB
#            event ids, half-open and
#            slow-header connections (closed by the header timeout), 1 MiB batch lines;
#   reloads  a watched playbook rewritten every 20 s, every third write broken (the last good
#            set keeps serving), and a SIGHUP every 60 s.
#
# Usage: scripts/soak.sh [DURATION_S (1800)]
# WHYFAIL_BIN=path uses that binary (else target/release/whyfail, built if missing). Only
# loopback traffic. Exit 0 when the bound holds, 1 when it does not.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-1800}
max_rss_mb=${SOAK_MAX_RSS_MB:-300}
max_growth_mb=${SOAK_MAX_GROWTH_MB:-20}
if [ -n "${WHYFAIL_BIN:-}" ]; then
  bin=$WHYFAIL_BIN
else
  bin="${CARGO_TARGET_DIR:-target}/release/whyfail"
  [ -x "$bin" ] || cargo build --release -q --bin whyfail
fi
tmp=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/playbooks"
printf 'soak-token-%s-%s\n' "$$" "$RANDOM" > "$tmp/token"
python3 - "$tmp/playbooks" <<'PY'
import sys
d = sys.argv[1]
# A playbook whose 30 checks each burn CPU: one diagnosis costs seconds unless it is stopped.
causes = "".join(f"""  - id: slow_{i}
    title: Slow cause {i}
    checks:
      - id: slow_check_{i}
        script: |
          let s = "ab"; s.pad(60000, "c"); let n = 0;
          for i in 0..6000 {{ n += s.index_of("zz"); }}
          n > 0
        evidence: slow
    actions: [wait]
""" for i in range(30))
open(f"{d}/slowpoke.yaml", "w").write(
    "id: slowpoke\ntitle: A deliberately slow playbook\npriority: 100\napplies_when: error.status == 599\n"
    "causes:\n" + causes + "actions:\n  - id: wait\n    title: Wait\n    actor: user\n")
PY

: > "$tmp/out"
RUST_LOG=warn "$bin" serve --listen 127.0.0.1:0 --offline --token-file "$tmp/token" \
  --playbooks "$tmp/playbooks" --concurrency 4 --request-timeout 1000 \
  --header-timeout 2000 --idle-timeout 5000 > "$tmp/out" 2> "$tmp/log" &
server_pid=$!
for _ in $(seq 1 400); do
  [ "$(wc -l < "$tmp/out")" -ge 1 ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/log"; exit 1; }
  sleep 0.05
done
addr=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["listening"])' "$tmp/out")
echo "soak: $bin serve on $addr (pid $server_pid) for ${duration}s"

python3 - "$addr" "$server_pid" "$duration" "$tmp" "$max_rss_mb" "$max_growth_mb" <<'PY'
import collections, http.client, json, os, random, signal, socket, sys, threading, time

addr, pid, duration, tmp = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
max_rss, max_growth = float(sys.argv[5]), float(sys.argv[6])
host, port = addr.rsplit(":", 1)
port = int(port)
token = open(f"{tmp}/token").read().strip()
auth = {"Authorization": f"Bearer {token}"}
events = [open(f"examples/events/{f}").read() for f in sorted(os.listdir("examples/events")) if f.endswith(".json")]
batch_lines = open("examples/events/batch.jsonl").read()
stop_at = time.time() + duration
lock = threading.Lock()
counts = collections.Counter()      # (kind, status) -> n
unexpected = collections.Counter()  # kind -> n
transport = collections.Counter()   # kind -> n

def note(kind, status, ok):
    with lock:
        counts[(kind, status)] += 1
        if not ok:
            unexpected[kind] += 1

def call(method, path, body=None, headers=None, timeout=30):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, dict(r.getheaders()), data
    finally:
        c.close()

def request(kind, expect, method, path, body=None, headers=None):
    try:
        status, hdrs, _ = call(method, path, body, headers)
    except Exception as e:
        with lock:
            transport[kind] += 1
        return None
    ok = status in expect
    if status == 503 and "Retry-After" not in hdrs and "retry-after" not in hdrs:
        ok = False
    note(kind, status, ok)
    return status

json_h = dict(auth, **{"Content-Type": "application/json"})
def valid():
    while time.time() < stop_at:
        r = random.random()
        # 503 and 504 are expected too: the hostile requests take the slots and the CPU (the
        # blocking pool has one thread per core offline), so a valid request may be shed or
        # wait past its timeout; their share is reported.
        if r < 0.6:
            request("valid", {200, 503, 504}, "POST", "/v1/diagnose", random.choice(events), json_h)
        elif r < 0.7:
            request("valid", {200, 503, 504}, "POST", "/v1/diagnose/batch", "[" + ",".join(events) + "]", json_h)
        elif r < 0.8:
            request("valid", {200, 503, 504}, "POST", "/v1/diagnose/batch", batch_lines,
                    dict(auth, **{"Content-Type": "application/x-ndjson"}))
        elif r < 0.9:
            request("valid", {200}, "GET", "/healthz")
        else:
            request("valid", {200}, "GET", "/metrics", headers=auth)
        time.sleep(0.02)

def invalid():
    while time.time() < stop_at:
        k = random.randrange(6)
        if k == 0:
            request("invalid", {400, 503, 504}, "POST", "/v1/diagnose", '{"error": {"status": tru', json_h)
        elif k == 1:
            request("invalid", {401}, "POST", "/v1/diagnose", events[0], {"Authorization": "Bearer wrong"})
        elif k == 2:
            # The server may answer 413 and close before the upload ends: a reset here is counted
            # apart, not as a failure.
            request("oversized", {413}, "POST", "/v1/diagnose", "x" * (2 << 20), json_h)
        elif k == 3:
            request("invalid", {404}, "GET", "/v2/nothing", headers=auth)
        elif k == 4:
            request("invalid", {400, 503}, "POST", "/v1/diagnose?audience=robot", events[0], json_h)
        else:
            request("invalid", {400, 503, 504}, "POST", "/v1/diagnose", '{"event_id": "no error"}', json_h)
        time.sleep(0.05)

slow_event = json.dumps({"event_id": "slow", "error": {"status": 599, "message": "slow"}})
def hostile():
    while time.time() < stop_at:
        k = random.randrange(5)
        if k == 0:
            # Past the request timeout: 504, or 503 while slots are held by stopping work.
            request("hostile", {504, 503}, "POST", "/v1/diagnose", slow_event, json_h)
        elif k == 1:
            # A burst larger than --concurrency.
            ts = [threading.Thread(target=request, args=("hostile", {504, 503}, "POST", "/v1/diagnose", slow_event, json_h)) for _ in range(6)]
            for t in ts: t.start()
            for t in ts: t.join()
        elif k == 2:
            ev = json.dumps({"event_id": "evt-" + "x" * 100_000, "error": {"status": 429}})
            request("hostile", {200, 503, 504}, "POST", "/v1/diagnose", ev, json_h)
        elif k == 3:
            # Half-open and slow-header connections, left for the server to close.
            socks = []
            for i in range(50):
                try:
                    s = socket.create_connection((host, port), timeout=5)
                    if i % 2:
                        s.sendall(b"POST /v1/diagnose HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    socks.append(s)
                except OSError:
                    with lock:
                        transport["hostile-connect"] += 1
            time.sleep(3)
            closed = 0
            for s in socks:
                s.settimeout(5)
                try:
                    closed += s.recv(1) == b""
                except OSError:
                    closed += 1
                s.close()
            note("hostile-conns", "closed" if closed == len(socks) else f"open:{len(socks) - closed}", closed == len(socks))
        else:
            line = json.dumps({"event_id": "big", "error": {"status": 429, "message": "x" * (1 << 20)}})
            request("hostile", {200, 413, 503, 504}, "POST", "/v1/diagnose/batch", line + "\n" + events[0].replace("\n", " "),
                    dict(auth, **{"Content-Type": "application/x-ndjson"}))
        time.sleep(2)

teapot = "id: teapot\ntitle: Teapot ({n})\npriority: 10\napplies_when: error.status == 418\ncauses:\n  - id: teapot_cause\n    title: A teapot\n    checks:\n      - id: is_418\n        expr: error.status == 418\n        evidence: The server answered 418\n    actions: [wait]\nactions:\n  - id: wait\n    title: Wait\n    actor: user\n"
def reloads():
    n = 0
    while time.time() < stop_at:
        n += 1
        text = teapot.format(n=n) if n % 3 else teapot.replace("actions: [wait]", "actions: [missing_action]")
        p = f"{tmp}/playbooks/teapot.yaml"
        open(p + ".tmp", "w").write(text)
        os.replace(p + ".tmp", p)
        if n % 3 == 0:
            os.kill(pid, signal.SIGHUP)
        with lock:
            counts[("reload", "broken" if n % 3 == 0 else "good")] += 1
        time.sleep(20)

def rss_mb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")

samples = []
threads = [threading.Thread(target=f, daemon=True) for f in (valid, valid, invalid, hostile, reloads)]
start = time.time()
for t in threads: t.start()
next_report = start + 60
while time.time() < stop_at:
    try:
        samples.append((time.time() - start, rss_mb()))
    except FileNotFoundError:
        print("soak: the server died"); break
    if time.time() >= next_report:
        with lock:
            n = sum(counts.values())
        print(f"soak: {samples[-1][0]:6.0f}s rss {samples[-1][1]:6.1f} MB, {n} answers, "
              f"{sum(unexpected.values())} unexpected, {sum(transport.values())} transport errors", flush=True)
        next_report += 60
    time.sleep(5)
for t in threads: t.join(timeout=60)
alive = os.path.exists(f"/proc/{pid}")
if alive:
    status, _, _ = call("GET", "/healthz")
    alive = status == 200
    samples.append((time.time() - start, rss_mb()))

peak = max(r for _, r in samples)
window = min(600.0, duration / 3)
end_t = samples[-1][0]
in_window = [r for t, r in samples if t >= end_t - window]
growth = in_window[-1] - in_window[0] if in_window else float("nan")
print()
print(f"soak: {duration:.0f}s, {len(samples)} RSS samples every 5 s")
print(f"  RSS: start {samples[0][1]:.1f} MB, peak {peak:.1f} MB, end {samples[-1][1]:.1f} MB; "
      f"growth over the last {window:.0f} s: {growth:+.1f} MB")
for kind in ("valid", "invalid", "oversized", "hostile", "hostile-conns", "reload"):
    parts = ", ".join(f"{s}: {n}" for (k, s), n in sorted(counts.items(), key=lambda x: str(x[0])) if k == kind)
    print(f"  {kind:13} {parts}")
print(f"  unexpected answers: {dict(unexpected) or 0}; transport errors: {dict(transport) or 0}")
checks = [
    (peak <= max_rss, f"peak RSS {peak:.1f} MB <= {max_rss:.0f} MB"),
    (growth <= max_growth, f"growth {growth:+.1f} MB over the last {window:.0f} s <= {max_growth:.0f} MB"),
    (sum(unexpected.values()) == 0, "every answer had the status its kind expects"),
    (transport["valid"] == 0 and transport["invalid"] == 0, "no transport error on a valid or invalid request"),
    (alive, "the server is up at the end"),
]
for ok, what in checks:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}")
sys.exit(0 if all(ok for ok, _ in checks) else 1)
PY
