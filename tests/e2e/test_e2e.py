"""End to end through the whole local stack: POST → Cloud Tasks emulator → ingest → Pub/Sub emulator →
status → Firestore emulator → GET, with a replay server serving a real GDELT slot."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from common.local.samples import HERE as SAMPLES
from common.local.stack import Stack, StackConfig, client_env
from tests.conftest import fixture_path
from tests.e2e.deployments import BACKFILL_DAY, backfill_day
from tests.sources.gdelt_helpers import gdelt_replay_dir, slot_csv

pytestmark = pytest.mark.e2e
REAL_SLOT = "20191024143000"
BAD_SLOT = "20240115121500"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("e2e")
    real = fixture_path("gdelt", f"{REAL_SLOT}.export.CSV")
    sample = SAMPLES / "gdelt" / "20240115120000.export.CSV"
    bad = slot_csv(tmp, BAD_SLOT, sample)
    day = [slot_csv(tmp, f"20240116{h:02d}{m:02d}00", sample) for h in range(24) for m in (0, 15, 30, 45)]
    root = gdelt_replay_dir(tmp / "replay", [real, sample, bad, *day], corrupt_md5_of=BAD_SLOT)
    s = Stack(StackConfig(state_dir=tmp / "stack", replay_dir=root, auto_ports=True, scheduler=True))
    state = s.up()
    yield state
    s.down()


def wait_for(api: httpx.Client, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


@pytest.fixture
def api(stack):
    with httpx.Client(base_url=stack.endpoints["api_url"], timeout=30) as client:
        yield client


def test_a_real_slot_is_ingested_end_to_end(api, stack) -> None:
    r = api.post("/v1/jobs", json={"source": "gdelt", "params": {"slot": REAL_SLOT}})
    assert r.status_code == 202 and r.json()["status"] == "queued"
    job = wait_for(api, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["records"] == 2111
    assert job["attempt"] == 1 and job["started_at"] and job["finished_at"]
    paths = [Path(u.removeprefix("file://")) for u in job["outputs"]]
    assert all(p.exists() for p in paths)
    (parquet,) = [p for p in paths if p.suffix == ".parquet"]
    table = pq.read_table(parquet)
    assert table.num_rows == 2111
    assert sum(c.startswith("0") for c in table.column("EventCode").to_pylist()) == 1503


def test_submitting_the_same_slot_again_duplicates_nothing(api, stack) -> None:
    body = {"source": "gdelt", "params": {"slot": REAL_SLOT}}
    first = wait_for(api, api.post("/v1/jobs", json=body).json()["job_id"])
    data_dir = Path(stack.endpoints["output_uri"].removeprefix("file://"))
    before = sorted(p for p in data_dir.rglob("*") if p.is_file())
    hits = httpx.get(f"{stack.endpoints['replay_url']}/_replay/hits").json()
    again = api.post("/v1/jobs", json=body)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["job_id"] == first["job_id"] and again.json()["status"] == "succeeded"
    time.sleep(1.0)
    assert sorted(p for p in data_dir.rglob("*") if p.is_file()) == before
    assert httpx.get(f"{stack.endpoints['replay_url']}/_replay/hits").json() == hits, "nothing was fetched again"
    listed = api.get("/v1/jobs", params={"source": "gdelt"}).json()["jobs"]
    assert [j["job_id"] for j in listed].count(first["job_id"]) == 1


def test_an_md5_mismatch_fails_the_job_permanently(api) -> None:
    r = api.post("/v1/jobs", json={"source": "gdelt", "params": {"slot": BAD_SLOT}})
    job = wait_for(api, r.json()["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["kind"] == "permanent"
    assert "md5" in job["error"]["message"] and "does not match the listed" in job["error"]["message"]
    assert job["attempt"] == 1, "a permanent error is not retried"


def test_sources_show_last_status_and_watermark(api) -> None:
    wait_for(api, api.post("/v1/jobs", json={"source": "gdelt", "params": {"slot": REAL_SLOT}}).json()["job_id"])
    (gdelt,) = [s for s in api.get("/v1/sources").json()["sources"] if s["name"] == "gdelt"]
    assert gdelt["watermark"] >= REAL_SLOT
    assert gdelt["last_success_at"]


def test_the_stock_tasks_client_sees_the_stack_queues(stack) -> None:
    with client_env({"CLOUD_TASKS_EMULATOR_HOST": stack.endpoints["tasks_emulator_host"]}):
        from common.gcp import clients

        queues = [q.name for q in clients.tasks().list_queues(parent=f"projects/{stack.project}/locations/us-central1")]
    assert f"projects/{stack.project}/locations/us-central1/queues/ingest-gdelt" in queues


def test_the_stack_pushes_job_events_with_message_ordering(stack) -> None:
    with client_env({"PUBSUB_EMULATOR_HOST": stack.endpoints["pubsub_emulator_host"]}):
        from common.gcp import clients

        sub = clients.subscriber().get_subscription(subscription=f"projects/{stack.project}/subscriptions/status-push")
    assert sub.enable_message_ordering, "one job's events one after another, as deploy.sh creates it"


def test_a_one_day_backfill_makes_96_jobs_that_all_succeed(api, stack) -> None:
    # Dispatch is paced by the queue; lift the declared 2/s so the test takes seconds, as an operator could.
    with client_env({"CLOUD_TASKS_EMULATOR_HOST": stack.endpoints["tasks_emulator_host"]}):
        from common.gcp import clients
        from common.gcp.tasks import queue_path

        with client_env({"TRIBUTARY_PROJECT": stack.project}):
            queue = clients.tasks().get_queue(name=queue_path("gdelt"))
            queue.rate_limits.max_dispatches_per_second = 50
            queue.rate_limits.max_concurrent_dispatches = 8
            clients.tasks().update_queue(queue=queue)
    body = {"source": "gdelt", "start": BACKFILL_DAY, "end": BACKFILL_DAY}
    batch = backfill_day(api, timeout=120)
    assert batch["counts"] == {"queued": 0, "running": 0, "succeeded": 96, "failed": 0, "cancelled": 0}
    assert batch["status"] == "succeeded"
    again = api.post("/v1/backfills", json=body).json()
    assert again["batch_id"] == batch["batch_id"] and again["counts"]["succeeded"] == 96, "resubmitting re-runs nothing"
    jobs = api.get("/v1/jobs", params={"batch_id": batch["batch_id"], "limit": 500}).json()["jobs"]
    assert len(jobs) == 96 and sum(j["records"] for j in jobs) == 96 * 24


def test_the_scheduler_emulator_fires_a_minutely_schedule_into_the_api(stack, api) -> None:
    with client_env({"CLOUD_SCHEDULER_EMULATOR_HOST": stack.endpoints["scheduler_emulator_host"]}):
        from google.cloud import scheduler_v1

        from common.gcp import clients

        parent = f"projects/{stack.project}/locations/us-central1"
        synced = {j.name.rsplit("/", 1)[-1] for j in clients.scheduler().list_jobs(parent=parent)}
        assert "tributary-gdelt" in synced, "dev up syncs the schedules"
        job = scheduler_v1.Job(
            name=f"{parent}/jobs/tributary-every-minute",
            schedule="* * * * *",
            time_zone="Europe/Paris",
            http_target=scheduler_v1.HttpTarget(
                uri=f"{stack.endpoints['api_url']}/v1/jobs",
                http_method=scheduler_v1.HttpMethod.POST,
                headers={"Content-Type": "application/json"},
                body=b'{"source": "gdelt", "params": {"slot": "20240115120000"}}',
            ),
        )
        clients.scheduler().create_job(parent=parent, job=job)
    fired = httpx.post(f"{stack.endpoints['scheduler_admin_url']}/advance", json={"seconds": 125}, timeout=30).json()
    mine = [f for f in fired.get("fired", fired) if str(f.get("job", f.get("name", ""))).endswith("every-minute")]
    assert len(mine) >= 2 and all(f["status"] == 202 for f in mine), fired
    jobs = api.get("/v1/jobs", params={"source": "gdelt"}).json()["jobs"]
    assert any(j["params"].get("slot") == "20240115120000" for j in jobs)


def test_n8n_run_daily_and_its_polling_alias(api) -> None:
    # This stack replays GDELT only; every source through the stack is tests/e2e/test_demo.py's job.
    r = api.post("/api/v1/ingest/run-daily", json={"date": "2024-01-15", "sources": ["gdelt"]})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["job_id"].startswith("run-daily-20240115") and len(body["jobs"]) == 1
    again = api.post("/api/v1/ingest/run-daily", json={"date": "2024-01-15", "sources": ["gdelt"]})
    assert again.json()["job_id"] == body["job_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        polled = api.get(f"/api/v1/ingest/jobs/{body['job_id']}").json()
        if polled["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.3)
    assert polled["status"] == "succeeded", polled
    assert {j["source"] for j in polled["jobs"]} >= {"gdelt"}
    single = api.get(f"/api/v1/ingest/jobs/{body['jobs'][0]}").json()
    assert single["job_id"] == body["jobs"][0]


def test_the_cli_submits_follows_and_backfills(stack, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from common.ops.cli import app

    monkeypatch.setenv("TRIBUTARY_API_URL", stack.endpoints["api_url"])
    runner = CliRunner()
    done = runner.invoke(app, ["jobs", "submit", "gdelt", "-p", "slot=20240115120000", "--wait", "--timeout", "60"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["status"] == "succeeded"
    bad = runner.invoke(app, ["jobs", "submit", "gdelt", "-p", "slot=2024"])
    assert bad.exit_code == 1 and "params.slot" in bad.output
    fill = runner.invoke(app, ["backfill", "gdelt", "--start", "2024-01-15T12:00", "--end", "2024-01-15T12:15"])
    assert fill.exit_code == 0, fill.output
    assert json.loads(fill.stdout[fill.stdout.index("{") :])["counts"]["succeeded"] >= 0
    status = runner.invoke(app, ["dev", "status", "--json", "--state-dir", stack.state_dir])
    assert status.exit_code == 0 and json.loads(status.stdout)["api_url"] == stack.endpoints["api_url"]
