"""Apache Airflow: ask whyfail why a task failed, from the task's `on_failure_callback`.

    from whyfail_callback import whyfail_on_failure
    PythonOperator(task_id="sync", python_callable=sync, on_failure_callback=whyfail_on_failure)

Environment: WHYFAIL_URL (e.g. http://whyfail.internal:8080), WHYFAIL_TOKEN. The diagnosis's
explanation goes to the task log; the disposition decides whether the task is worth retrying.
A `requests` HTTPError keeps its status, headers and body; any other exception is sent with its
text, which whyfail's signals recognise (DNS, refused, TLS, timeouts in every client's wording).
Runs without Airflow too: `python whyfail_callback.py` sends a sample failure.
"""

import datetime
import json
import os
import urllib.request


def failure_event(context):
    """The whyfail failure event (contract section 1) from an Airflow task context."""
    exc = context.get("exception")
    ti = context.get("task_instance")
    error = {"kind": "platform", "message": f"{type(exc).__name__}: {exc}" if exc else "task failed"}
    response = getattr(exc, "response", None)  # requests.HTTPError and friends
    if response is not None:
        body = response.text
        try:
            body = response.json()
        except ValueError:
            pass
        error = {
            "kind": "http",
            "status": response.status_code,
            "message": str(exc),
            "headers": {k.lower(): v for k, v in response.headers.items()},
            "body": body,
        }
    conn = context.get("params", {}).get("whyfail_connection", {})  # what the DAG knows about it
    return {
        "event_id": f"{getattr(ti, 'dag_id', 'dag')}.{getattr(ti, 'task_id', 'task')}.{getattr(ti, 'try_number', 1)}",
        "occurred_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "workflow": {"id": getattr(ti, "dag_id", None), "name": getattr(ti, "dag_id", None)},
        "node": {"id": getattr(ti, "task_id", None), "name": getattr(ti, "task_id", None), "type": "airflow_task"},
        "execution": {"id": str(context.get("run_id", "")), "mode": "production"},
        "phase": "request",
        "error": error,
        "connection": conn,
    }


def diagnose(event):
    """POST /v1/diagnose; returns the resolution (contract section 2)."""
    req = urllib.request.Request(
        os.environ.get("WHYFAIL_URL", "http://127.0.0.1:8080") + "/v1/diagnose",
        data=json.dumps(event).encode(),
        headers={"Authorization": "Bearer " + os.environ.get("WHYFAIL_TOKEN", ""), "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def whyfail_on_failure(context):
    """`on_failure_callback`: logs why, and what to do next."""
    try:
        res = diagnose(failure_event(context))
    except Exception as e:  # the callback must never fail the scheduler
        print(f"whyfail unavailable: {e}")
        return None
    cause = (res.get("root_causes") or [{}])[0]
    print(f"whyfail: {cause.get('id', res.get('status'))} -> {res['disposition']['kind']}")
    print(res.get("explanation", ""))
    return res


if __name__ == "__main__":
    class _Response:
        status_code, text = 429, '{"message": "API rate limit exceeded"}'
        headers = {"Retry-After": "120"}
        def json(self):
            return json.loads(self.text)

    class _HTTPError(Exception):
        response = _Response()

    print(json.dumps(whyfail_on_failure({"exception": _HTTPError("429 Client Error: Too Many Requests")}) or {}, indent=2)[:400])
