#!/usr/bin/env python3
"""Runs examples/integrations/airflow for real: `airflow dags test` on a DAG whose tasks fail
against a local API, with a real `whyfail serve` behind a capture proxy; checks what whyfail was
sent (status, headers, body) and that each task's outcome (tries, delay, final state in Airflow's
database) follows whyfail's disposition.

Usage: python3 tests/integrations/airflow.test.py [path/to/whyfail]
       (Airflow from tests/integrations/airflow/requirements.txt in target/airflow-venv, or AIRFLOW_VENV)
Standard library only; Airflow runs in its own venv.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

here = Path(__file__).resolve().parent
repo = here.parent.parent
whyfail = (repo / (sys.argv[1] if len(sys.argv) > 1 else "target/release/whyfail")).resolve()
venv = Path(os.environ.get("AIRFLOW_VENV", repo / "target/airflow-venv")).resolve()
token = "airflow-test-token"
failed = False


def check(name, cond, detail=None):
    global failed
    if cond:
        print(f"ok      {name}")
    else:
        failed = True
        print(f"FAILED  {name}" + ("" if detail is None else f": {json.dumps(detail, default=str)[:1500]}"))


# The API the tasks call: each case answers as a real provider would; calls are timed.
calls = {}
CASES = {
    "r429": lambda n: (429, {"Retry-After": "2"}, {"message": "API rate limit exceeded for user ID 1234."}) if n == 1 else (200, {}, {"items": []}),
    "r401": lambda n: (401, {"WWW-Authenticate": 'Bearer error="invalid_token", error_description="The access token expired"'},
                       {"error": "invalid_token", "error_description": "The access token expired"}),
    "r403": lambda n: (403, {}, {"message": "Resource not accessible by integration", "documentation_url": "https://docs.github.com/rest"}),
    "flaky": lambda n: (503, {}, {"message": "Service Unavailable"}) if n == 1 else (200, {}, {"items": []}),
}
for alias in ("guarded", "down", "badtoken"):
    CASES[alias] = CASES["r403"]


class Api(BaseHTTPRequestHandler):
    def do_GET(self):
        case = self.path.rsplit("/", 1)[-1]
        if case not in CASES:
            self.send_error(404)
            return
        calls.setdefault(case, []).append(time.monotonic())
        status, headers, body = CASES[case](len(calls[case]))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


# whyfail serve, and a proxy in front of it that keeps every event and answer.
serve_log = tempfile.TemporaryFile(mode="w+")
serve = subprocess.Popen([str(whyfail), "serve", "--listen", "127.0.0.1:0", "--offline"], cwd=repo,
                         env={**os.environ, "WHYFAIL_TOKEN": token}, stdout=subprocess.PIPE, stderr=serve_log, text=True)
listening = json.loads(serve.stdout.readline())["listening"]
seen = []  # {"event", "status", "answer"}


class Proxy(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        req = urllib.request.Request(f"http://{listening}{self.path}", data=body, method="POST",
                                     headers={"Authorization": self.headers.get("Authorization", ""), "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                status, answer = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, answer = e.code, e.read()
        try:
            seen.append({"event": json.loads(body), "status": status, "answer": json.loads(answer)})
        except ValueError:
            seen.append({"event": body, "status": status, "answer": answer})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


servers = [ThreadingHTTPServer(("127.0.0.1", 0), Api), ThreadingHTTPServer(("127.0.0.1", 0), Proxy)]
for s in servers:
    threading.Thread(target=s.serve_forever, daemon=True).start()
api_url = f"http://127.0.0.1:{servers[0].server_port}/api"
proxy_url = f"http://127.0.0.1:{servers[1].server_port}"

home = Path(tempfile.mkdtemp(prefix="whyfail-airflow-"))
dags = home / "dags"
dags.mkdir()
shutil.copy(repo / "examples/integrations/airflow/whyfail_callback.py", dags)
shutil.copy(here / "airflow/whyfail_integration_dag.py", dags)
(dags / ".airflowignore").write_text("whyfail_callback.py\n")
env = {
    **os.environ,
    "AIRFLOW_HOME": str(home),
    "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    "API_URL": api_url,
    "WHYFAIL_URL": proxy_url,
    "WHYFAIL_TOKEN": token,
    "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
}
log = ""
try:
    if not (venv / "bin/airflow").exists():
        raise RuntimeError(f"no Airflow in {venv}: python3 -m venv {venv} && {venv}/bin/pip install -r tests/integrations/airflow/requirements.txt")
    t0 = time.monotonic()
    r = subprocess.run([str(venv / "bin/airflow"), "db", "migrate"], env=env, capture_output=True, text=True)
    log += r.stdout + r.stderr
    if r.returncode:
        raise RuntimeError(f"airflow db migrate exited {r.returncode}")
    print(f"(airflow: database ready in {time.monotonic() - t0:.1f} s)")
    t0 = time.monotonic()
    r = subprocess.run([str(venv / "bin/airflow"), "dags", "test", "whyfail_integration"], env=env,
                       capture_output=True, text=True, timeout=180)
    log += r.stdout + r.stderr
    print(f"(airflow: dags test ran in {time.monotonic() - t0:.1f} s)")
    check("the DAG run finished (and failed, as some tasks must)", "DagRun Finished" in log and "state=failed" in log)

    db = sqlite3.connect(home / "airflow.db")
    states = {t: (s, n) for t, s, n in db.execute(
        "select task_id, state, try_number from task_instance where dag_id = 'whyfail_integration'")}

    def asked(task_id):
        return [s for s in seen if isinstance(s["event"], dict) and s["event"].get("node", {}).get("id") == task_id]

    # rate_limited: the Retry-After header reaches whyfail, and its delay (not the task's hour) is used.
    a = asked("rate_limited")
    ev = a[0]["event"] if a else {}
    err = ev.get("error", {})
    check("429: whyfail got the status, the Retry-After header and the body",
          err.get("status") == 429 and err.get("headers", {}).get("retry-after") == "2"
          and err.get("body") == {"message": "API rate limit exceeded for user ID 1234."}, err)
    check("429: the event names the API's base URL and the DAG, task and run",
          ev.get("connection", {}).get("base_url") == api_url.rsplit("/", 1)[0] and ev.get("workflow", {}).get("id") == "whyfail_integration"
          and ev.get("execution", {}).get("id", "").startswith("manual__"), {k: ev.get(k) for k in ("connection", "workflow", "execution")})
    check("429: whyfail said retry_after 2 s", a and a[0]["answer"]["disposition"] == {"kind": "retry_after", "retry_after_seconds": 2},
          a and a[0]["answer"].get("disposition"))
    gap = calls["r429"][1] - calls["r429"][0] if len(calls.get("r429", [])) == 2 else None
    check("429: retried once, after whyfail's 2 s (not the task's own 60 s), and succeeded",
          states.get("rate_limited") == ("success", 2) and gap is not None and 2 <= gap < 20,
          {"state": states.get("rate_limited"), "gap": gap})

    # token_expired / forbidden: a person must act: failed at once, whatever `retries` says.
    for task_id, case, kind in (("token_expired", "r401", "needs_user"), ("forbidden", "r403", "needs_admin")):
        a = asked(task_id)
        check(f"{case[1:]}: whyfail got the status and body{' and WWW-Authenticate' if case == 'r401' else ''}",
              a and a[0]["event"]["error"]["status"] == int(case[1:]) and isinstance(a[0]["event"]["error"].get("body"), dict)
              and (case != "r401" or "invalid_token" in a[0]["event"]["error"]["headers"].get("www-authenticate", "")),
              a and a[0]["event"]["error"])
        check(f"{case[1:]}: whyfail said {kind}", a and a[0]["answer"]["disposition"]["kind"] == kind, a and a[0]["answer"].get("disposition"))
        check(f"{case[1:]}: failed after one try although retries=3", states.get(task_id) == ("failed", 1) and len(calls.get(case, [])) == 1,
              {"state": states.get(task_id), "calls": len(calls.get(case, []))})

    # flaky: retry, after the task's own delay.
    a = asked("flaky")
    check("503 once: whyfail said retry", a and a[0]["answer"]["disposition"]["kind"] == "retry", a and a[0]["answer"].get("disposition"))
    check("503 once: retried and succeeded", states.get("flaky") == ("success", 2) and len(calls.get("flaky", [])) == 2,
          {"state": states.get("flaky"), "calls": len(calls.get("flaky", []))})

    # guarded: the wrapper for Airflow before 3.3 fails the task for good.
    check("wrapper: 403 -> AirflowFailException, one try although retries=3",
          states.get("guarded") == ("failed", 1) and len(calls.get("guarded", [])) == 1 and "AirflowFailException" in log,
          {"state": states.get("guarded"), "calls": len(calls.get("guarded", []))})

    # whyfail unavailable: a clear log line, and Airflow's own retries.
    check("whyfail down: a clear message, no traceback from the policy",
          "could not be reached" in log and "Retry policy evaluation failed" not in log)
    check("whyfail down: Airflow's own retries applied", states.get("whyfail_down") == ("failed", 2) and len(calls.get("down", [])) == 2,
          {"state": states.get("whyfail_down"), "calls": len(calls.get("down", []))})
    check("wrong token: whyfail answered 401 and the log says to check WHYFAIL_TOKEN",
          any(s["status"] == 401 for s in seen) and "answered 401 unauthorized" in log and "check WHYFAIL_TOKEN" in log)
    check("wrong token: Airflow's own retries applied", states.get("whyfail_wrong_token") == ("failed", 2) and len(calls.get("badtoken", [])) == 2,
          {"state": states.get("whyfail_wrong_token"), "calls": len(calls.get("badtoken", []))})

    # The whole answer is in the task log, not cut.
    answers = {s["answer"]["event_id"]: s["answer"] for s in seen if s["status"] == 200}
    logged = [json.loads(line.split("whyfail answer: ", 1)[1].rsplit(" [whyfail]", 1)[0].strip())
              for line in log.splitlines() if "whyfail answer: " in line]
    check("the task log has whyfail's whole answers, as sent",
          len(logged) == len(answers) and all(answers.get(a["event_id"]) == a for a in logged)
          and max(len(json.dumps(a)) for a in logged) > 400, {"logged": len(logged), "answers": len(answers)})
except Exception as e:  # noqa: BLE001 - report, then print Airflow's output
    check(f"airflow integration ran to the end ({e})", False)
finally:
    if failed:
        print("--- airflow output (last 8000 characters) ---\n" + log[-8000:])
        serve_log.seek(0)
        print("--- whyfail serve log ---\n" + serve_log.read()[-3000:])
    serve.terminate()
    for s in servers:
        s.shutdown()
    shutil.rmtree(home, ignore_errors=True)
print("airflow integration: FAILED" if failed else "airflow integration: ok")
sys.exit(1 if failed else 0)
