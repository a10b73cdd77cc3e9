#!/usr/bin/env bash
# A CI or cron step that asks whyfail why a call failed and acts on the answer.
#
#   WHYFAIL_URL=http://127.0.0.1:8080 WHYFAIL_TOKEN=... ./whyfail-on-failure.sh https://api.example.com/items
#
# Runs the call with curl; on failure it sends whyfail the failure event (exit code, curl's own
# error text, or the HTTP status, headers and body), prints the explanation, and exits with
# what the disposition says: 0 after a successful retry, 75 (EX_TEMPFAIL) to be retried later,
# 1 when a person has to act. Without WHYFAIL_URL it runs the local binary instead
# (`whyfail diagnose --offline -`).
set -uo pipefail
url=${1:?usage: $0 URL}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

call() {
  curl -sS --max-time 20 -D "$tmp/headers" -o "$tmp/body" -w '%{http_code}' \
    ${API_TOKEN:+-H "Authorization: Bearer $API_TOKEN"} "$url" 2> "$tmp/err"
}

status=$(call); rc=$?
if [ "$rc" -eq 0 ] && [ "$status" -lt 400 ]; then cat "$tmp/body"; exit 0; fi

# The failure event (contract section 1); python3 only builds JSON safely.
event=$(python3 - "$url" "$rc" "$status" "$tmp" <<'PY'
import json, sys, pathlib, datetime
url, rc, status, tmp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3] or 0), pathlib.Path(sys.argv[4])
headers = {}
for line in (tmp / "headers").read_text(errors="replace").splitlines()[1:] if (tmp / "headers").exists() else []:
    if ":" in line:
        k, v = line.split(":", 1); headers[k.strip().lower()] = v.strip()
body = (tmp / "body").read_text(errors="replace") if (tmp / "body").exists() else ""
try: body = json.loads(body)
except ValueError: pass
err = (tmp / "err").read_text(errors="replace").strip()
event = {
    "occurred_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
    "node": {"name": "curl step", "type": "shell"},
    "phase": "request",
    "error": ({"kind": "http", "status": status, "message": f"HTTP {status} from {url}", "headers": headers, "body": body}
              if rc == 0 else {"kind": "network", "code": f"curl ({rc})", "message": err}),
    "connection": {"provider": "generic", "base_url": url},
}
print(json.dumps(event))
PY
)

if [ -n "${WHYFAIL_URL:-}" ]; then
  answer=$(curl -sS -X POST "$WHYFAIL_URL/v1/diagnose" -H "Authorization: Bearer ${WHYFAIL_TOKEN:?}" \
    -H 'Content-Type: application/json' --data-binary "$event")
else
  answer=$(printf '%s' "$event" | whyfail diagnose --offline -)
fi

python3 - "$answer" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(r.get("explanation", ""), file=sys.stderr)
d = r.get("disposition", {})
print(f"whyfail: {r['root_causes'][0]['id'] if r.get('root_causes') else r.get('status')}; disposition {d.get('kind')}"
      + (f" in {d['retry_after_seconds']} s" if d.get("retry_after_seconds") else ""), file=sys.stderr)
sys.exit({"retry": 75, "retry_after": 75, "refresh_then_retry": 75}.get(d.get("kind"), 1))
PY
