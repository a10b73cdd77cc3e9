"""The DAG that tests/integrations/airflow.test.py runs with `airflow dags test`: each task calls
a local API (API_URL, from the test) that fails the way providers do, and hands the failure to
whyfail as examples/integrations/airflow/whyfail_callback.py documents (copied next to this file).
"""

import os
from datetime import timedelta

import requests
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, task
from whyfail_callback import WhyfailRetryPolicy, whyfail_guard


def call(case):
    r = requests.get(f"{os.environ['API_URL']}/{case}", timeout=10)
    r.raise_for_status()
    return r.json()


SOON = timedelta(seconds=1)
# The task's own delay is a minute: whyfail's retry_after_seconds (2) must replace it.
LATER = timedelta(seconds=60)

with DAG(dag_id="whyfail_integration", schedule=None, catchup=False):

    @task(retries=3, retry_delay=LATER, retry_policy=WhyfailRetryPolicy())
    def rate_limited():  # 429 with Retry-After: 2, then 200
        return call("r429")

    @task(retries=3, retry_delay=SOON, retry_policy=WhyfailRetryPolicy())
    def token_expired():  # 401, an expired bearer token: retrying cannot help
        return call("r401")

    @task(retries=3, retry_delay=SOON, retry_policy=WhyfailRetryPolicy())
    def forbidden():  # 403: an admin has to grant access
        return call("r403")

    @task(retries=3, retry_delay=SOON, retry_policy=WhyfailRetryPolicy())
    def flaky():  # 503 once, then 200: retried after the task's own delay
        return call("flaky")

    # Airflow before 3.3: the wrapper, on a classic operator.
    PythonOperator(task_id="guarded", python_callable=whyfail_guard(lambda: call("guarded")), retries=3, retry_delay=SOON)

    @task(retries=1, retry_delay=SOON, retry_policy=WhyfailRetryPolicy(url="http://127.0.0.1:9"))
    def whyfail_down():  # whyfail unreachable: Airflow's own retries apply
        return call("down")

    @task(retries=1, retry_delay=SOON, retry_policy=WhyfailRetryPolicy(token="not-the-token"))
    def whyfail_wrong_token():  # whyfail refuses: Airflow's own retries apply
        return call("badtoken")

    rate_limited()
    token_expired()
    forbidden()
    flaky()
    whyfail_down()
    whyfail_wrong_token()
