#!/usr/bin/env bash
# A CI or cron step that calls an API with curl and, when the call fails, asks whyfail why and
# acts on the answer.
#
#   WHYFAIL_URL=http://127.0.0.1:8080 WHYFAIL_TOKEN=... API_TOKEN=... ./whyfail-on-failure.sh https://api.example.com/items
#
# API_TOKEN      optional: sent to the API as `Authorization: Bearer $API_TOKEN`
# WHYFAIL_URL    whyfail serve's address; WHYFAIL_TOKEN its bearer token. Without WHYFAIL_URL the
#                local binary answers (`whyfail diagnose --offline -`; WHYFAIL_BIN, default `whyfail`)
# RETRIES        how many times to call again when whyfail says retry / retry_after (default 1)
# MAX_WAIT       the longest wait, in seconds, before such a retry (default 300); RETRY_DELAY the wait
#                for a plain `retry` (default 5)
#
# On failure it sends whyfail the failure event (curl's exit code and error text, or the HTTP
# status, headers and body), prints the explanation on stderr, and then:
#   retry / retry_after   waits (Retry-After as whyfail read it) and calls again, up to RETRIES times
#   exit 0    the call succeeded (the body is on stdout), at once or after a retry
#   exit 75   still failing, worth retrying later (EX_TEMPFAIL): retry, retry_after beyond MAX_WAIT
#             or RETRIES, refresh_then_retry (refresh the token API_TOKEN holds, then run again)
#   exit 1    a person has to act: needs_user, needs_admin, stop
#   exit 69   the call failed and whyfail could not say why: down, wrong WHYFAIL_TOKEN, bad answer
#             (EX_UNAVAILABLE)
#   exit 2    usage
set -uo pipefail
url=${1:-}
if [ -z "$url" ]; then echo "usage: $0 URL" >&2; exit 2; fi
retries=${RETRIES:-1}
max_wait=${MAX_WAIT:-300}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

call() {
  curl -sS --max-time 20 -D "$tmp/headers" -o "$tmp/body" -w '%{http_code}' \
    ${API_TOKEN:+-H "Authorization: Bearer $API_TOKEN"} "$url" 2> "$tmp/err"
}

# The failure event (contract section 1); python3 only builds JSON safely.
event() {
  python3 - "$url" "$1" "$2" "$tmp" <<'PY'
import json, os, sys, pathlib, datetime, urllib.parse
url, rc, status, tmp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3] or 0), pathlib.Path(sys.argv[4])
headers = {}
lines = (tmp / "headers").read_text(errors="replace").splitlines() if (tmp / "headers").exists() else []
for line in lines:
    if line.startswith("HTTP/"):
        headers = {}  # the last response's headers only (after redirects)
    elif ":" in line:
        k, v = line.split(":", 1); headers[k.strip().lower()] = v.strip()
body = (tmp / "body").read_text(errors="replace") if (tmp / "body").exists() else ""
try: body = json.loads(body)
except ValueError: pass
err = (tmp / "err").read_text(errors="replace").strip()
kind = {6: "network", 7: "network", 28: "timeout", 35: "tls", 51: "tls", 58: "tls", 60: "tls"}.get(rc, "network")
parts = urllib.parse.urlsplit(url)
event = {
    "occurred_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
    "node": {"name": "curl step", "type": "shell"},
    "phase": "request",
    "error": ({"kind": "http", "status": status, "message": f"HTTP {status} from {url}", "headers": headers, "body": body}
              if rc == 0 else {"kind": kind, "code": f"curl ({rc})", "message": err}),
    "connection": {"provider": "generic", "base_url": f"{parts.scheme}://{parts.netloc}",
                   "auth_type": "bearer" if os.environ.get("API_TOKEN") else "none"},
}
print(json.dumps(event))
PY
}

# Asks whyfail; prints the answer (JSON) or a message on stderr and returns non-zero.
ask() {
  if [ -n "${WHYFAIL_URL:-}" ]; then
    local code
    code=$(curl -sS --max-time 15 -o "$tmp/answer" -w '%{http_code}' -X POST "${WHYFAIL_URL%/}/v1/diagnose" \
      -H "Authorization: Bearer ${WHYFAIL_TOKEN:-}" -H 'Content-Type: application/json' \
      --data-binary "$1" 2> "$tmp/ask-err")
    if [ "$code" = "000" ]; then
      echo "whyfail: could not reach $WHYFAIL_URL: $(cat "$tmp/ask-err")" >&2; return 1
    elif [ "$code" = "401" ]; then
      echo "whyfail: $WHYFAIL_URL refused the token (401): check WHYFAIL_TOKEN" >&2; return 1
    elif [ "$code" != "200" ]; then
      echo "whyfail: $WHYFAIL_URL answered $code: $(head -c 300 "$tmp/answer")" >&2; return 1
    fi
    cat "$tmp/answer"
  else
    local bin=${WHYFAIL_BIN:-whyfail}
    if ! command -v "$bin" >/dev/null; then
      echo "whyfail: no WHYFAIL_URL and no '$bin' binary on PATH" >&2; return 1
    fi
    printf '%s' "$1" | "$bin" diagnose --offline - 2> "$tmp/ask-err" || {
      echo "whyfail: $bin diagnose failed: $(cat "$tmp/ask-err")" >&2; return 1; }
  fi
}

attempt=0
while :; do
  status=$(call); rc=$?
  if [ "$rc" -eq 0 ] && [ "$status" -lt 400 ]; then cat "$tmp/body"; exit 0; fi
  if [ "$rc" -eq 0 ]; then what="HTTP $status"; else what="curl exit $rc: $(cat "$tmp/err")"; fi
  echo "call failed ($what); asking whyfail" >&2

  answer=$(ask "$(event "$rc" "$status")") || exit 69
  # One line back: the kind, then the seconds to wait (may be empty); the explanation to stderr.
  read -r kind delay < <(python3 - "$answer" <<'PY'
import json, sys
try:
    r = json.loads(sys.argv[1])
    d = r["disposition"]
except (ValueError, KeyError, TypeError):
    print("whyfail: the answer is not a resolution: " + sys.argv[1][:300], file=sys.stderr)
    print("invalid"); sys.exit(0)
print(r.get("explanation", ""), file=sys.stderr)
cause = r["root_causes"][0]["id"] if r.get("root_causes") else r.get("status")
secs = d.get("retry_after_seconds")
print(f"whyfail: {cause}; disposition {d.get('kind')}" + (f" in {secs} s" if secs else ""), file=sys.stderr)
print(d.get("kind") or "invalid", int(secs) if secs is not None else "")
PY
)
  case "$kind" in
    retry|retry_after)
      if [ "$kind" = retry ] || [ -z "$delay" ]; then delay=${RETRY_DELAY:-5}; fi
      if [ "$attempt" -ge "$retries" ]; then
        echo "still failing after $attempt retr$([ "$attempt" = 1 ] && echo y || echo ies); retry later" >&2; exit 75
      fi
      if [ "$delay" -gt "$max_wait" ]; then
        echo "whyfail says wait $delay s, more than MAX_WAIT=$max_wait; retry later" >&2; exit 75
      fi
      attempt=$((attempt + 1))
      echo "retrying in $delay s ($attempt of $retries)" >&2
      sleep "$delay"
      ;;
    refresh_then_retry) echo "refresh the token (API_TOKEN), then run again" >&2; exit 75 ;;
    needs_user|needs_admin|stop) exit 1 ;;
    invalid) exit 69 ;;
    *) echo "whyfail: unknown disposition '$kind'" >&2; exit 1 ;;
  esac
done
