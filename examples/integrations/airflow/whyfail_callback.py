"""Apache Airflow: ask whyfail why a task failed, and let the answer decide what happens next.

Put this file in your DAGs folder (it is on `sys.path` there; add `whyfail_callback.py` to the
folder's `.airflowignore` so the DAG processor does not parse it) or in `$AIRFLOW_HOME/plugins`.
Environment of the workers: WHYFAIL_URL (e.g. http://whyfail.internal:8080), WHYFAIL_TOKEN.

Airflow 3.3 and later, a retry policy (consulted on every failed try, before Airflow decides):

    from airflow.sdk import task
    from whyfail_callback import WhyfailRetryPolicy

    @task(retries=3, retry_delay=timedelta(minutes=5), retry_policy=WhyfailRetryPolicy())
    def sync(): ...

    # or, for an operator: from airflow.providers.standard.operators.python import PythonOperator
    PythonOperator(task_id="sync", python_callable=sync, retries=3, retry_policy=WhyfailRetryPolicy())

  retry / refresh_then_retry -> retried after the task's retry_delay (within `retries`)
  retry_after                -> retried after whyfail's retry_after_seconds (a 429's Retry-After)
  needs_user / needs_admin / stop -> failed now, no more tries
  whyfail unreachable or refusing -> Airflow's own retry rules, with a clear log line

Airflow 3.0 to 3.2 (no retry policies): wrap the callable instead. A needs_* or stop answer
raises AirflowFailException (no more tries); anything else re-raises for Airflow's own retries:

    PythonOperator(task_id="sync", python_callable=whyfail_guard(sync), retries=3)

The explanation and the whole answer go to the task log. A `requests`/`httpx` HTTP error (also
when an Airflow hook wraps it, e.g. HttpHook's AirflowException) is sent with its status,
headers and body; any other exception with its text, which whyfail's signals recognise (DNS,
refused, TLS, timeouts in every client's wording). `python whyfail_callback.py` sends a sample
429 and prints the whole answer.
"""

import datetime
import functools
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request

log = logging.getLogger("whyfail")

# Kinds after which another try can succeed, and kinds that need a person (or nothing helps).
RETRY_KINDS = {"retry", "retry_after", "refresh_then_retry"}
FAIL_KINDS = {"needs_user", "needs_admin", "stop"}

_PROVIDERS = [("github", "github"), ("gitlab", "gitlab"), ("slack.com", "slack"), ("microsoft", "microsoft"),
              ("googleapis", "google"), ("atlassian", "jira"), ("salesforce", "salesforce"), ("halopsa", "halopsa")]


class WhyfailUnavailable(Exception):
    """whyfail could not be asked or refused the request (wrong token, down, bad answer)."""


def _http_response(exc):
    """The HTTP response behind an exception, following `raise ... from` and implicit chains."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        response = getattr(exc, "response", None)
        if response is not None and getattr(response, "status_code", None) is not None:
            return response
        exc = exc.__cause__ or exc.__context__
    return None


def failure_event(context, exception=None, connection=None):
    """The whyfail failure event (contract section 1) from an Airflow task context."""
    context = context or {}
    exc = exception if exception is not None else context.get("exception")
    ti = context.get("task_instance") or context.get("ti")
    dag_id, task_id = getattr(ti, "dag_id", "dag"), getattr(ti, "task_id", "task")
    error = {"kind": "platform", "message": f"{type(exc).__name__}: {exc}" if exc else "task failed"}
    name = type(exc).__name__.lower() if exc else ""  # a hint only: whyfail reads the message too
    if "timeout" in name:
        error["kind"] = "timeout"
    elif "ssl" in name or "certificate" in name:
        error["kind"] = "tls"
    elif "connection" in name or "gaierror" in name:
        error["kind"] = "network"
    conn = dict(connection or context.get("params", {}).get("whyfail_connection") or {})
    response = _http_response(exc)
    if response is not None:
        text = getattr(response, "text", "")
        try:
            body = response.json()
        except Exception:  # not JSON, or no body at all
            body = text
        error = {
            "kind": "http",
            "status": response.status_code,
            "message": str(exc),
            "headers": {k.lower(): v for k, v in response.headers.items()},
            "body": body,
        }
        url = str(getattr(response, "url", "") or "")
        if url and "base_url" not in conn:
            parts = urllib.parse.urlsplit(url)
            conn["base_url"] = f"{parts.scheme}://{parts.netloc}"
    if "provider" not in conn:
        host = urllib.parse.urlsplit(conn.get("base_url", "")).netloc
        conn["provider"] = next((p for key, p in _PROVIDERS if key in host), "generic")
    try_number = getattr(ti, "try_number", 1)
    return {
        "event_id": f"{dag_id}.{task_id}.{context.get('run_id', 'run')}.{try_number}",
        "occurred_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "workflow": {"id": dag_id, "name": dag_id},
        "node": {"id": task_id, "name": task_id, "type": type(getattr(ti, "task", None)).__name__ if ti else "airflow_task"},
        "execution": {"id": str(context.get("run_id", "")), "mode": "production", "trigger": "airflow"},
        "phase": "request",
        "error": error,
        "connection": conn,
    }


def diagnose(event, url=None, token=None, timeout=10):
    """POST /v1/diagnose; returns the resolution (contract section 2) or raises WhyfailUnavailable."""
    url = (url or os.environ.get("WHYFAIL_URL", "http://127.0.0.1:8080")).rstrip("/")
    token = token if token is not None else os.environ.get("WHYFAIL_TOKEN", "")
    req = urllib.request.Request(
        url + "/v1/diagnose",
        data=json.dumps(event).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        try:
            detail = json.load(e).get("error", {})
            detail = f"{detail.get('code')}: {detail.get('message')}"
        except Exception:
            detail = e.reason
        hint = " (check WHYFAIL_TOKEN)" if e.code == 401 else ""
        raise WhyfailUnavailable(f"whyfail at {url} answered {e.code} {detail}{hint}") from None
    except (urllib.error.URLError, OSError) as e:
        raise WhyfailUnavailable(f"whyfail at {url} could not be reached: {getattr(e, 'reason', e)}") from None
    except ValueError as e:
        raise WhyfailUnavailable(f"whyfail at {url} did not answer JSON: {e}") from None


def ask(context, exception=None, connection=None, url=None, token=None):
    """Asks whyfail, logs the explanation and the whole answer; returns it (None if unavailable)."""
    try:
        res = diagnose(failure_event(context, exception, connection), url, token)
    except WhyfailUnavailable as e:
        log.warning("%s; Airflow's own retry rules apply", e)
        return None
    d = res.get("disposition") or {}
    cause = (res.get("root_causes") or [{}])[0].get("id", res.get("status"))
    log.info("whyfail: %s -> %s%s", cause, d.get("kind"),
             f" in {d['retry_after_seconds']} s" if d.get("retry_after_seconds") else "")
    log.info("%s", res.get("explanation", ""))
    log.info("whyfail answer: %s", json.dumps(res))
    return res


try:  # Airflow 3.3+: retry policies
    from airflow.sdk import RetryDecision, RetryPolicy
except ImportError:  # older Airflow, or no Airflow: whyfail_guard still works
    RetryPolicy = None

if RetryPolicy is not None:

    class WhyfailRetryPolicy(RetryPolicy):
        """Asks whyfail on every failed try; retries, retries later, or fails now as it answers.

        connection: what the task calls, e.g. {"provider": "github", "auth_type": "bearer"}
        (else `params["whyfail_connection"]`, else guessed from the failed response's URL).
        url, token: override WHYFAIL_URL / WHYFAIL_TOKEN.
        """

        def __init__(self, connection=None, url=None, token=None):
            self.connection, self.url, self.token = connection, url, token

        def evaluate(self, exception, try_number, max_tries, context=None):
            res = ask(context, exception, self.connection, self.url, self.token)
            if res is None:
                return RetryDecision.default()
            d = res.get("disposition") or {}
            kind = d.get("kind")
            cause = (res.get("root_causes") or [{}])[0].get("title") or res.get("status")
            if kind in FAIL_KINDS:
                return RetryDecision.fail(reason=f"whyfail: {kind}: {cause}")
            if kind == "retry_after" and d.get("retry_after_seconds"):
                return RetryDecision.retry(delay=datetime.timedelta(seconds=d["retry_after_seconds"]),
                                           reason=f"whyfail: retry in {d['retry_after_seconds']} s: {cause}")
            if kind in RETRY_KINDS:
                return RetryDecision.retry(reason=f"whyfail: {kind}: {cause}")
            return RetryDecision.default()


def whyfail_guard(fn, connection=None, url=None, token=None):
    """Wraps a task callable: on failure asks whyfail; needs_* or stop fail the task for good."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            try:
                from airflow.sdk import get_current_context
                context = get_current_context()
            except Exception:  # outside a running task
                context = {}
            res = ask(context, exc, connection, url, token)
            kind = ((res or {}).get("disposition") or {}).get("kind")
            if kind in FAIL_KINDS:
                from airflow.sdk.exceptions import AirflowFailException
                raise AirflowFailException(f"whyfail: {kind}: {(res.get('root_causes') or [{}])[0].get('title') or res.get('status')}") from exc
            raise

    return wrapper


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    class _Response:
        status_code, text, url = 429, '{"message": "API rate limit exceeded for user ID 1234."}', "https://api.github.com/user/repos"
        headers = {"Retry-After": "120"}

        def json(self):
            return json.loads(self.text)

    class _HTTPError(Exception):
        response = _Response()

    try:
        answer = diagnose(failure_event({}, _HTTPError("429 Client Error: Too Many Requests")))
    except WhyfailUnavailable as e:
        hint = "\nStart it with: WHYFAIL_TOKEN=... whyfail serve --listen 127.0.0.1:8080" if "reached" in str(e) else ""
        raise SystemExit(f"{e}{hint}")
    print(json.dumps(answer, indent=2))
