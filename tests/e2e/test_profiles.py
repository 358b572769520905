"""The same end-to-end assertions on every executor profile (tests/e2e/deployments.py): one job contract.

Each test runs once per profile against a running deployment: the API answers the same, and a slice of the
fault matrix (a duplicate delivery, a transient failure that clears, a permanent one, events out of order,
and, on the embedded executor, ``kill -9`` mid-task) ends with one terminal state, no duplicate records, no
task left behind, and every event applied once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from common.core.events import Event, EventData, EventType
from common.core.jobs import Job
from common.runtime import executors
from tests.e2e.deployments import (
    BACKFILL_DAY,
    BAD_SLOT,
    FLAKY_SLOT,
    GOOD_SLOT,
    PROFILES,
    SAMPLE_ROWS,
    SLOW_SLOT,
    Deployment,
    EmbeddedDeployment,
    backfill_day,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=sorted(PROFILES))
def dep(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = PROFILES[request.param](tmp_path_factory.mktemp(f"e2e-{request.param}"))
    deployment.speed_up("gdelt")
    yield deployment
    deployment.stop()


@pytest.fixture
def api(dep: Deployment) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dep.api_url, timeout=30) as client:
        yield client


def wait_for(api: httpx.Client, job_id: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job.get('status')} after {timeout} s")


def submit(api: httpx.Client, slot: str, key: str | None = None) -> dict[str, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    r = api.post("/v1/jobs", json={"source": "gdelt", "params": {"slot": slot}}, headers=headers)
    assert r.status_code == 202, r.text
    return dict(r.json())


def rows_of(dep: Deployment, job: dict[str, Any]) -> int:
    """The Parquet rows the job's slot holds on disk, every copy counted (a duplicate would show)."""
    slot = job["params"]["slot"]
    return sum(pq.read_metadata(p).num_rows for p in dep.data_dir.rglob(f"{slot}*.parquet"))


def settled(dep: Deployment, job: dict[str, Any]) -> None:
    """The checks every scenario ends with: no duplicate records, no orphan task, the events applied once."""
    deadline = time.monotonic() + 20
    while dep.tasks_left(job["job_id"], "gdelt") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert dep.tasks_left(job["job_id"], "gdelt") == 0, "no task is left behind"
    if job["status"] == "succeeded":
        assert rows_of(dep, job) == SAMPLE_ROWS, "no duplicate records"
    markers = dep.markers(job["job_id"])
    assert markers and all(m.startswith(job["job_id"] + ".") for m in markers)
    attempts = {int(m.split(".")[-3]) for m in markers}
    assert max(attempts) <= job["attempt"], "no event of an attempt the job does not count"
    terminal = [m for m in markers if m.split(".")[-2] in ("succeeded", "failed")]
    assert f"{job['job_id']}.{job['attempt']}.{job['status']}.0" in terminal, "the deciding event was applied"


def test_a_slot_is_ingested_and_the_answers_are_the_same(api: httpx.Client, dep: Deployment) -> None:
    created = submit(api, GOOD_SLOT)
    assert created["status"] == "queued" or created["status"] in ("running", "succeeded")
    job = wait_for(api, created["job_id"])
    assert job["status"] == "succeeded" and job["records"] == SAMPLE_ROWS and job["attempt"] == 1, job
    assert all(Path(u.removeprefix("file://")).exists() for u in job["outputs"])
    settled(dep, job)
    (gdelt,) = [s for s in api.get("/v1/sources").json()["sources"] if s["name"] == "gdelt"]
    assert gdelt["watermark"] >= GOOD_SLOT and gdelt["last_success_at"]
    assert api.get("/v1/openapi.json").json()["paths"].keys() >= {"/v1/jobs", "/v1/backfills"}


def test_resubmission_is_idempotent_and_fetches_nothing(api: httpx.Client, dep: Deployment) -> None:
    first = wait_for(api, submit(api, GOOD_SLOT)["job_id"])
    before = sorted(p for p in dep.data_dir.rglob("*") if p.is_file())
    hits = dep.hits()
    again = api.post("/v1/jobs", json={"source": "gdelt", "params": {"slot": GOOD_SLOT}})
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["job_id"] == first["job_id"] and again.json()["status"] == "succeeded"
    time.sleep(1.0)
    assert sorted(p for p in dep.data_dir.rglob("*") if p.is_file()) == before
    assert dep.hits() == hits
    listed = api.get("/v1/jobs", params={"source": "gdelt"}).json()["jobs"]
    assert [j["job_id"] for j in listed].count(first["job_id"]) == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"source": "gdelt", "params": {"slot": "2024"}}, 400, "invalid_params"),
        ({"source": "nope", "params": {}}, 400, "unknown_source"),
        ({"params": {}}, 400, None),
    ],
)
def test_bad_input_is_a_4xx_and_creates_nothing(api: httpx.Client, body: dict, status: int, code: str | None) -> None:
    before = len(api.get("/v1/jobs", params={"limit": 500}).json()["jobs"])
    r = api.post("/v1/jobs", json=body)
    assert r.status_code == status and (code is None or r.json()["error"]["code"] == code), r.text
    assert api.get("/v1/jobs/gdelt-nothing").status_code == 404
    assert api.post("/v1/jobs", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    assert len(api.get("/v1/jobs", params={"limit": 500}).json()["jobs"]) == before


def test_a_permanent_failure_is_not_retried(api: httpx.Client, dep: Deployment) -> None:
    job = wait_for(api, submit(api, BAD_SLOT)["job_id"])
    assert job["status"] == "failed" and job["error"]["kind"] == "permanent" and job["attempt"] == 1, job
    assert "md5" in job["error"]["message"]
    settled(dep, job)


def test_a_failed_job_is_retried_as_a_new_run(api: httpx.Client, dep: Deployment) -> None:
    job = wait_for(api, submit(api, BAD_SLOT, key="retry-me")["job_id"])
    assert job["status"] == "failed"
    r = api.post(f"/v1/jobs/{job['job_id']}:retry")
    assert r.status_code == 202 and r.json()["status"] == "queued", r.text
    again = wait_for(api, job["job_id"])
    assert again["status"] == "failed" and again["run"] == 2, again  # the listed md5 is still wrong
    assert api.post(f"/v1/jobs/{job['job_id']}:cancel").status_code == 409


def test_a_queued_job_is_cancelled_in_a_paused_queue(api: httpx.Client, dep: Deployment) -> None:
    assert api.post("/v1/queues/gdelt:pause").json()["state"] == "PAUSED"
    try:
        created = submit(api, GOOD_SLOT, key="cancel-me")
        r = api.post(f"/v1/jobs/{created['job_id']}:cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        assert dep.tasks_left(created["job_id"], "gdelt") == 0, "the cancel deleted its waiting task"
        queues = {q["source"]: q for q in api.get("/v1/queues").json()["queues"]}
        assert queues["gdelt"]["state"] == "PAUSED"
    finally:
        assert api.post("/v1/queues/gdelt:resume").json()["state"] == "RUNNING"
    time.sleep(1.0)
    assert api.get(f"/v1/jobs/{created['job_id']}").json()["status"] == "cancelled"


def test_a_transient_failure_that_clears_succeeds_on_a_later_attempt(api: httpx.Client, dep: Deployment) -> None:
    # Four 503s outlast the HTTP client's own retries within the first attempt; the queue's retry clears it.
    dep.add_faults({"path": f"/gdelt/{FLAKY_SLOT}.export.CSV.zip", "mode": "answer", "status": 503, "times": 4})
    job = wait_for(api, submit(api, FLAKY_SLOT)["job_id"])
    assert job["status"] == "succeeded" and job["attempt"] >= 2 and job["error"] is None, job
    settled(dep, job)


def test_a_duplicate_delivery_changes_nothing(api: httpx.Client, dep: Deployment) -> None:
    job = wait_for(api, submit(api, GOOD_SLOT, key="duplicate-delivery")["job_id"])
    markers = dep.markers(job["job_id"])
    dep.deliver_again(job)
    deadline = time.monotonic() + 30
    while dep.tasks_left(job["job_id"], "gdelt") and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    again = api.get(f"/v1/jobs/{job['job_id']}").json()
    assert again["status"] == "succeeded" and again["records"] == job["records"]
    assert dep.markers(job["job_id"]) == markers, "the redelivered task republished the same events: no new one"
    settled(dep, again)


def test_events_out_of_order_and_twice_are_applied_once(dep: Deployment) -> None:
    job_id = f"gdelt-outoforder{dep.profile}"
    with dep.using() as s:
        executors.state(s).create_job(Job(job_id=job_id, source="gdelt", params={"slot": GOOD_SLOT}))

    def ev(etype: EventType, **kw: Any) -> Event:
        return Event.make(etype, EventData(job_id=job_id, source="gdelt", attempt=kw.pop("attempt", 1), **kw))

    done = ev(EventType.succeeded, records=5)
    story = [
        done,
        ev(EventType.failed, attempt=2, error={"kind": "permanent", "message": "late"}),
        ev(EventType.started),
        done,
    ]
    dep.publish(story)
    deadline = time.monotonic() + 30
    while len(dep.markers(job_id)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    with dep.using() as s:
        job = executors.state(s).get_job(job_id)
    assert job is not None and job.status.value == "succeeded" and job.records == 5
    assert dep.markers(job_id) == {e.id for e in story}


def test_a_one_day_backfill_makes_96_jobs_that_all_succeed(api: httpx.Client, dep: Deployment) -> None:
    body = {"source": "gdelt", "start": BACKFILL_DAY, "end": BACKFILL_DAY}
    batch = backfill_day(api, timeout=300)
    assert batch["counts"] == {"queued": 0, "running": 0, "succeeded": 96, "failed": 0, "cancelled": 0}
    again = api.post("/v1/backfills", json=body).json()
    assert again["batch_id"] == batch["batch_id"] and again["counts"]["succeeded"] == 96
    jobs = api.get("/v1/jobs", params={"batch_id": batch["batch_id"], "limit": 500}).json()["jobs"]
    assert len(jobs) == 96 and sum(j["records"] for j in jobs) == 96 * SAMPLE_ROWS


def test_run_daily_and_the_reaper_answer(api: httpx.Client) -> None:
    r = api.post("/api/v1/ingest/run-daily", json={"date": "2024-01-15", "sources": ["gdelt"]})
    assert r.status_code == 202, r.text
    body = r.json()
    assert (
        api.post("/api/v1/ingest/run-daily", json={"date": "2024-01-15", "sources": ["gdelt"]}).json()["job_id"]
        == body["job_id"]
    )
    reaped = api.post("/v1/reaper:run", params={"dry_run": "true"})
    assert reaped.status_code == 200 and "reaped" in reaped.json()


def test_kill_9_mid_task_completes_the_job_once_after_restart(api: httpx.Client, dep: Deployment) -> None:
    if not isinstance(dep, EmbeddedDeployment):
        pytest.skip("the emulated stack's kill -9 scenarios are tests/faults/test_process.py")
    dep.add_faults({"path": f"/gdelt/{SLOW_SLOT}.export.CSV.zip", "mode": "slow", "delay": 1.5, "times": 1})
    job_id = submit(api, SLOW_SLOT)["job_id"]
    deadline = time.monotonic() + 30
    while api.get(f"/v1/jobs/{job_id}").json()["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    dep.kill()  # mid-fetch: its task row stays leased by a dead process
    dep.start()
    with httpx.Client(base_url=dep.api_url, timeout=30) as fresh:
        job = wait_for(fresh, job_id)
    assert job["status"] == "succeeded" and job["attempt"] == 2 and job["records"] == SAMPLE_ROWS, job
    settled(dep, job)
