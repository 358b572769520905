"""Retry, cancel and the queues, through the api function on the real Firestore emulator and our Tasks emulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from functions_framework import create_app
from typer.testing import CliRunner

from common.core.events import Event, EventData, EventType, PartProgress
from common.core.tasks import Part
from common.gcp import clients
from common.gcp.firestore import get_job, record_event
from common.gcp.tasks import TaskPayload, enqueue, ensure_queue, queue_path
from common.local.stack import free_port
from common.ops.cli import app
from common.settings import reset_settings
from common.sources import get_source
from tests.conftest import pull_events
from tests.integration.test_api_server import served_api

__all__ = ["served_api"]  # a fixture
FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
SLOT = {"source": "gdelt", "params": {"slot": "20240115120000"}}


@pytest.fixture
def api(gcp: str, tasks_emulator, monkeypatch: pytest.MonkeyPatch):
    # Tasks go nowhere (a closed port): a test decides which events its jobs see.
    monkeypatch.setenv("TRIBUTARY_INGEST_URL", f"http://127.0.0.1:{free_port()}/{{source}}")
    reset_settings()
    ensure_queue(get_source("gdelt"))
    clients.tasks().pause_queue(name=queue_path("gdelt"))  # tasks stay in the queue, where a test can see them
    return create_app("api", str(FUNCTIONS / "api.py")).test_client()


def task_names() -> list[str]:
    return sorted(t.name.rsplit("/", 1)[1] for t in clients.tasks().list_tasks(parent=queue_path("gdelt")))


def event(etype: EventType, job_id: str, *, run: int = 1, seq: str = "0", **data) -> Event:
    return Event.make(etype, EventData(job_id=job_id, source="gdelt", run=run, **data), seq=seq)


def failed_job(api) -> str:
    job_id = api.post("/v1/jobs", json=SLOT).get_json()["job_id"]
    record_event(event(EventType.started, job_id))
    record_event(event(EventType.failed, job_id, error={"kind": "permanent", "message": "secret FRED_API_KEY"}))
    assert get_job(job_id).status == "failed"
    return job_id


def error(r, status: int, code: str) -> None:
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.content_type == "application/json" and r.get_json()["error"]["code"] == code


# ---- retry ----------------------------------------------------------------------------------------
def test_a_failed_job_retried_keeps_its_id_runs_again_and_shows_both_runs(api) -> None:
    job_id = failed_job(api)
    r = api.post(f"/v1/jobs/{job_id}:retry")
    assert r.status_code == 202, r.get_json()
    job = r.get_json()
    assert (job["job_id"], job["status"], job["run"], job["attempt"], job["error"]) == (job_id, "queued", 2, 0, None)
    assert task_names() == [job_id, f"{job_id}--run2"], "run 2 has a task of its own name"
    record_event(event(EventType.started, job_id, run=2))
    record_event(event(EventType.succeeded, job_id, run=2, records=24, outputs=["file:///x"]))
    # A late event of run 1 changes nothing in run 2.
    record_event(event(EventType.succeeded, job_id, records=99, seq="late"))
    done = api.get(f"/v1/jobs/{job_id}").get_json()
    assert (done["status"], done["records"], done["run"]) == ("succeeded", 24, 2)
    runs = [(r["run"], r["status"], r["attempt"], (r["error"] or {}).get("message")) for r in done["runs"]]
    assert runs == [(1, "failed", 1, "secret FRED_API_KEY"), (2, "succeeded", 1, None)]


def test_retry_answers_409_for_a_job_that_is_not_failed_or_cancelled_and_404_for_none(api) -> None:
    job_id = api.post("/v1/jobs", json=SLOT).get_json()["job_id"]
    error(api.post(f"/v1/jobs/{job_id}:retry"), 409, "job_not_retryable")
    record_event(event(EventType.succeeded, job_id))
    r = api.post(f"/v1/jobs/{job_id}:retry")
    error(r, 409, "job_not_retryable")
    assert "succeeded" in r.get_json()["error"]["message"]
    error(api.post("/v1/jobs/gdelt-nope:retry"), 404, "job_not_found")
    error(api.post("/v1/jobs/__x__:retry"), 404, "job_not_found")
    error(api.post("/v1/jobs/gdelt-nope:cancel"), 404, "job_not_found")
    assert api.get(f"/v1/jobs/{job_id}").get_json()["run"] == 1


def test_submitting_a_failed_jobs_params_again_runs_it_again(api) -> None:
    job_id = failed_job(api)
    again = api.post("/v1/jobs", json=SLOT)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert (again.get_json()["job_id"], again.get_json()["status"], again.get_json()["run"]) == (job_id, "queued", 2)
    same = api.post("/v1/jobs", json=SLOT).get_json()
    assert (same["status"], same["run"]) == ("queued", 2), "a queued job is answered as it is"
    assert task_names() == [job_id, f"{job_id}--run2"]


# ---- cancel ---------------------------------------------------------------------------------------
def test_cancelling_a_queued_job_deletes_its_task_and_a_second_cancel_is_409(api) -> None:
    job_id = api.post("/v1/jobs", json=SLOT).get_json()["job_id"]
    assert task_names() == [job_id]
    r = api.post(f"/v1/jobs/{job_id}:cancel")
    assert r.status_code == 200, r.get_json()
    job = r.get_json()
    assert (job["status"], job["started_at"], job["error"]["type"]) == ("cancelled", None, "Cancelled")
    assert task_names() == []
    error(api.post(f"/v1/jobs/{job_id}:cancel"), 409, "job_not_cancellable")
    record_event(event(EventType.succeeded, job_id, records=3))  # the task had been dispatched after all
    assert get_job(job_id).status == "cancelled"
    again = api.post("/v1/jobs", json=SLOT).get_json()
    assert (again["status"], again["run"]) == ("cancelled", 1), "a cancel is undone only by a retry"
    retried = api.post(f"/v1/jobs/{job_id}:retry").get_json()
    assert (retried["status"], [r["status"] for r in retried["runs"]]) == ("queued", ["cancelled", "queued"])


@pytest.fixture
def ingest(api, topic):
    return create_app("ingest", str(FUNCTIONS / "ingest.py")).test_client()


def test_a_running_multi_part_job_cancelled_runs_no_further_part(api, ingest, topic) -> None:
    job_id = api.post("/v1/jobs", json=SLOT).get_json()["job_id"]
    parts = [Part(key=f"p{i}", index=i, total=3) for i in range(3)]
    record_event(event(EventType.started, job_id, progress=PartProgress(done=0, total=3)))
    for part in parts:  # the fan-out of the first task
        enqueue(TaskPayload(job_id=job_id, source="gdelt", params={}, part=part), get_source("gdelt"))
    record_event(event(EventType.progress, job_id, part="p0", seq="p0", progress=PartProgress(done=1, total=3)))
    assert get_job(job_id).status == "running"
    r = api.post(f"/v1/jobs/{job_id}:cancel")
    assert r.status_code == 200 and r.get_json()["status"] == "cancelled"
    assert task_names() == [], "the queued parts are deleted"
    # A part already dispatched before the cancel reaches the ingest: it stops at the boundary, publishes nothing.
    body = TaskPayload(job_id=job_id, source="gdelt", params={}, part=parts[1]).model_dump_json()
    answer = ingest.post("/gdelt", data=body)
    assert answer.status_code == 200 and "cancelled" in answer.get_json()["skipped"]
    assert pull_events(topic[1], expect=1, timeout=2) == []
    for part in parts[1:]:  # and parts that did finish change nothing
        landed = event(EventType.progress, job_id, part=part.key, seq=part.key, progress=PartProgress(done=1, total=3))
        record_event(landed)
    job = get_job(job_id)
    assert (job.status, job.records) == ("cancelled", 0)


def test_a_task_of_a_replaced_run_does_nothing(api, ingest, topic) -> None:
    job_id = failed_job(api)
    api.post(f"/v1/jobs/{job_id}:retry")
    old = TaskPayload(job_id=job_id, source="gdelt", params=SLOT["params"]).model_dump_json()
    answer = ingest.post("/gdelt", data=old)
    assert answer.status_code == 200 and "replaced by run 2" in answer.get_json()["skipped"]


# ---- queues ---------------------------------------------------------------------------------------
def test_queues_list_pause_purge_resume_through_the_api(api) -> None:
    queues = {q["source"]: q for q in api.get("/v1/queues").get_json()["queues"]}
    assert queues["gdelt"]["state"] == "PAUSED" and queues["fred"]["state"] == "MISSING"
    api.post("/v1/jobs", json=SLOT)
    assert len(task_names()) == 1
    assert api.post("/v1/queues/gdelt:resume").get_json()["state"] == "RUNNING"
    assert api.post("/v1/queues/gdelt:pause").get_json()["state"] == "PAUSED"
    purged = api.post("/v1/queues/gdelt:purge")
    assert purged.status_code == 200 and task_names() == []
    error(api.post("/v1/queues/nope:pause"), 404, "unknown_source")
    error(api.post("/v1/queues/fred:pause"), 404, "queue_not_found")
    error(api.post("/v1/queues/gdelt:frobnicate"), 404, "not_found")


def test_the_cli_retries_cancels_and_runs_the_queues(api, served_api: str) -> None:
    runner = CliRunner()

    def cli(*args: str):
        result = runner.invoke(app, [*args, "--api-url", served_api])
        assert "Traceback" not in result.output
        return result

    listed = cli("queues", "list")
    assert listed.exit_code == 0 and "PAUSED" in listed.output, listed.output
    assert '"state": "RUNNING"' in cli("queues", "resume", "gdelt").output
    assert '"state": "PAUSED"' in cli("queues", "pause", "gdelt").output
    job_id = failed_job(api)
    retried = cli("jobs", "retry", job_id)
    assert retried.exit_code == 0 and '"run": 2' in retried.output, retried.output
    cancelled = cli("jobs", "cancel", job_id)
    assert cancelled.exit_code == 0 and '"status": "cancelled"' in cancelled.output
    again = cli("jobs", "cancel", job_id)
    assert again.exit_code == 1 and "409 job_not_cancellable" in again.output
    assert len(again.output.strip().splitlines()) == 2, again.output  # the target line, then the one error line
    assert cli("queues", "purge", "gdelt").exit_code == 0 and task_names() == []
    unknown = cli("jobs", "retry", "gdelt-nope")
    assert unknown.exit_code == 1 and "404 job_not_found" in unknown.output
