"""The rollback flag through the whole local stack: TRIBUTARY_DISPATCH=celery, a real Redis and Celery worker,
the api, the Pub/Sub and Firestore emulators and the status function, exactly as with Cloud Tasks otherwise."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from common.local.samples import HERE as SAMPLES
from common.local.stack import Stack, StackConfig
from tests.executors.conftest import need_redis
from tests.executors.probe import fetches
from tests.sources.gdelt_helpers import gdelt_replay_dir

REPO = Path(__file__).resolve().parents[2]
#: Short, so that a task of a killed worker comes back soon, yet longer than any probe job here takes (a job
#: running past it is handed to another worker process too: at least once, not exactly once).
VISIBILITY_TIMEOUT = 20


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory: pytest.TempPathFactory):
    need_redis()
    tmp = tmp_path_factory.mktemp("celery-stack")
    replay = gdelt_replay_dir(tmp / "replay", [SAMPLES / "gdelt" / "20240115120000.export.CSV"])
    env = {
        "TRIBUTARY_DISPATCH": "celery",
        "TRIBUTARY_EXTRA_SOURCES": "tests.executors.probe:Probe",
        "PYTHONPATH": str(REPO),
        "PROBE_DIR": str(tmp / "probe"),
        "TRIBUTARY_CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        "TRIBUTARY_CALL_DEADLINE": "60",  # a shared machine under load: the emulators' first calls are slow
    }
    stack = Stack(StackConfig(state_dir=tmp / "stack", replay_dir=replay, auto_ports=True, scheduler=False, env=env))
    stack.up()
    yield stack
    stack.down()


@pytest.fixture
def api(celery_stack: Stack):
    # Idle connections are dropped after 1 s: the api's gunicorn closes them after 2 s (its keep-alive), and a
    # request sent on one as it closes fails with "Server disconnected" (seen after the 2 s waits below).
    limits = httpx.Limits(keepalive_expiry=1.0)
    with httpx.Client(base_url=celery_stack.endpoints()["api_url"], timeout=30, limits=limits) as client:
        yield client


def wait_for(api: httpx.Client, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


def probe(api: httpx.Client, **params: object) -> str:
    r = api.post("/v1/jobs", json={"source": "probe", "params": params})
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


def worker_log(stack: Stack) -> str:
    return (stack.state_dir / "logs" / "worker.log").read_text(errors="replace")


def test_run_daily_with_the_rollback_flag_runs_on_the_celery_worker(api: httpx.Client, celery_stack: Stack) -> None:
    r = api.post("/api/v1/ingest/run-daily", json={"date": "2024-01-15", "sources": ["gdelt"]})
    assert r.status_code == 202, r.text
    body = r.json()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        polled = api.get(f"/api/v1/ingest/jobs/{body['job_id']}").json()
        if polled["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.3)
    assert polled["status"] == "succeeded", polled
    (job_id,) = body["jobs"]
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["records"] > 0, job
    assert f"Task tributary.ingest[{job_id}] succeeded" in worker_log(celery_stack)


def test_a_transient_failure_is_retried_with_backoff_then_succeeds(api: httpx.Client, celery_stack: Stack) -> None:
    job = wait_for(api, probe(api, run="transient-once", fail="transient", fail_times=1))
    assert job["status"] == "succeeded" and job["attempt"] == 2 and job["records"] == 3, job
    assert fetches(Path(celery_stack.config.env["PROBE_DIR"]), "transient-once") == 2


def test_the_last_attempt_is_final_so_the_job_fails_instead_of_retrying_forever(
    api: httpx.Client, celery_stack: Stack
) -> None:
    job = wait_for(api, probe(api, run="transient-always", fail="transient", fail_times=99))
    assert job["status"] == "failed", job
    assert job["error"]["kind"] == "transient" and "gave up after 3 attempts" in job["error"]["message"], job
    time.sleep(1.5)  # past the probe's largest backoff: no attempt after the last
    assert fetches(Path(celery_stack.config.env["PROBE_DIR"]), "transient-always") == 3


def test_a_permanent_failure_is_not_retried(api: httpx.Client, celery_stack: Stack) -> None:
    job = wait_for(api, probe(api, run="permanent", fail="permanent", fail_times=99))
    assert job["status"] == "failed" and job["error"]["kind"] == "permanent" and job["attempt"] == 1, job
    time.sleep(1.0)
    assert fetches(Path(celery_stack.config.env["PROBE_DIR"]), "permanent") == 1


def test_a_duplicate_enqueue_is_refused_and_a_duplicate_delivery_changes_nothing(
    api: httpx.Client, celery_stack: Stack
) -> None:
    from common.celeryq import CeleryDispatcher
    from common.core.tasks import TaskPayload
    from tests.executors.probe import Probe

    job_id = probe(api, run="dup", rows=5)
    first = wait_for(api, job_id)
    assert first["status"] == "succeeded" and first["records"] == 5, first
    dispatcher = CeleryDispatcher(celery_stack.endpoints()["celery_broker_url"])
    payload = TaskPayload(job_id=job_id, source="probe", params=first["params"])
    assert dispatcher.enqueue(payload, Probe.queue) is False, "the task id is still claimed: a duplicate"
    dispatcher.app.send_task(  # what a broker redelivery looks like: the same task, again
        "tributary.ingest", args=[payload.model_dump(mode="json")], task_id=job_id, queue="ingest-probe"
    )
    folder = Path(celery_stack.config.env["PROBE_DIR"])
    deadline = time.monotonic() + 30
    while fetches(folder, "dup") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fetches(folder, "dup") == 2
    time.sleep(2.0)
    again = api.get(f"/v1/jobs/{job_id}").json()
    assert again["status"] == "succeeded" and again["records"] == 5 and again["outputs"] == first["outputs"], again
    (parquet,) = [u.removeprefix("file://") for u in again["outputs"] if u.endswith(".parquet")]
    assert pq.read_table(parquet).num_rows == 5


def test_kill_9_of_the_worker_mid_job_then_restart_completes_the_job_once(
    api: httpx.Client, celery_stack: Stack
) -> None:
    folder = Path(celery_stack.config.env["PROBE_DIR"])
    job_id = probe(api, run="killed", rows=7, sleep=3.0)
    deadline = time.monotonic() + 30
    while fetches(folder, "killed") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fetches(folder, "killed") == 1, "the worker never started the job"
    celery_stack.kill("worker")  # SIGKILL to the worker's whole process group, mid-fetch
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] in ("queued", "running")
    celery_stack.start_again("worker")
    job = wait_for(api, job_id, timeout=VISIBILITY_TIMEOUT + 60)
    assert job["status"] == "succeeded" and job["records"] == 7, job
    time.sleep(2.0)
    assert fetches(folder, "killed") == 2, "run again once after the restart, not more"
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
    (parquet,) = [u.removeprefix("file://") for u in job["outputs"] if u.endswith(".parquet")]
    assert pq.read_table(parquet).num_rows == 7, "no duplicate rows"
    written = sorted(p.name for p in Path(parquet).parent.glob("killed*"))
    assert written == ["killed.parquet"], written
