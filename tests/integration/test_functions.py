"""The three functions in-process (functions-framework test client) on the real emulators."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app

from common.core.events import Event, EventData, EventType
from common.gcp import clients
from common.gcp.firestore import get_job, reads, source_states
from common.gcp.tasks import TaskPayload, ensure_queue, queue_path
from common.local.recorded import ReplayServer
from common.local.samples import HERE as SAMPLES
from common.sources import get_source
from tests.conftest import pull_events
from tests.sources.gdelt_helpers import gdelt_replay_dir

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
SAMPLE = SAMPLES / "gdelt" / "20240115120000.export.CSV"


@pytest.fixture
def api(gcp: str, tasks_emulator) -> object:
    ensure_queue(get_source("gdelt"))
    return create_app("api", str(FUNCTIONS / "api.py")).test_client()


def tasks_in_queue() -> list:
    return list(clients.tasks().list_tasks(parent=queue_path("gdelt")))


# ---- api ------------------------------------------------------------------------------------------
def test_post_answers_202_and_a_get_straight_after_finds_the_job(api) -> None:
    r = api.post("/v1/jobs", json={"source": "gdelt", "params": {"slot": "20240115120000"}})
    assert r.status_code == 202
    job = r.get_json()
    assert job["status"] == "queued" and job["job_id"].startswith("gdelt-")
    assert r.headers["Location"] == f"/v1/jobs/{job['job_id']}"
    again = api.get(f"/v1/jobs/{job['job_id']}")
    assert again.status_code == 200 and again.get_json()["job_id"] == job["job_id"]
    (task,) = tasks_in_queue()
    assert task.name.endswith(f"/tasks/{job['job_id']}")


def test_the_same_job_twice_is_one_job_and_one_task(api) -> None:
    body = {"source": "gdelt", "params": {"slot": "20240115120000"}}
    first = api.post("/v1/jobs", json=body)
    second = api.post("/v1/jobs", json=body)
    assert first.get_json()["job_id"] == second.get_json()["job_id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(tasks_in_queue()) == 1
    assert len(api.get("/v1/jobs").get_json()["jobs"]) == 1


def test_idempotency_key_names_the_job(api) -> None:
    a = api.post("/v1/jobs", json={"source": "gdelt", "params": {}}, headers={"Idempotency-Key": "n8n-run-1"})
    b = api.post(
        "/v1/jobs",
        json={"source": "gdelt", "params": {"slot": "20240115120000"}},
        headers={"Idempotency-Key": "n8n-run-1"},
    )
    assert a.get_json()["job_id"] == b.get_json()["job_id"]


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "field"),
    [
        ({"data": b"{not json", "content_type": "application/json"}, 400, "invalid_json", None),
        ({"data": b"", "content_type": "application/json"}, 400, "invalid_json", None),
        ({"json": ["gdelt"]}, 400, "invalid_request", "body"),
        ({"json": {"params": {}}}, 400, "invalid_request", "source"),
        ({"json": {"source": "nope"}}, 400, "unknown_source", "source"),
        ({"json": {"source": "gdelt", "params": {}, "extra": 1}}, 400, "invalid_request", "extra"),
        ({"json": {"source": "gdelt", "params": {"slot": "20240115121000"}}}, 400, "invalid_params", "params.slot"),
        ({"json": {"source": "gdelt", "params": "x"}}, 400, "invalid_request", "params"),
        ({"data": b"source=gdelt", "content_type": "text/plain"}, 415, "unsupported_media_type", None),
        (
            {"data": b'{"source":"' + b"x" * 70000 + b'"}', "content_type": "application/json"},
            413,
            "body_too_large",
            None,
        ),
        (
            {"json": {"source": "gdelt"}, "headers": {"Idempotency-Key": "k" * 300}},
            400,
            "invalid_header",
            "Idempotency-Key",
        ),
    ],
)
def test_bad_input_answers_4xx_json_naming_the_problem_and_creates_nothing(api, kwargs, status, code, field) -> None:
    r = api.post("/v1/jobs", **kwargs)
    assert r.status_code == status, r.get_data(as_text=True)
    err = r.get_json()["error"]
    assert err["code"] == code and err["message"]
    assert err.get("field") == field
    assert api.get("/v1/jobs").get_json()["jobs"] == []
    assert tasks_in_queue() == []


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/jobs/gdelt-unknown", 404, "job_not_found"),
        ("/v1/jobs/__main__", 404, "job_not_found"),
        ("/api/v1/ingest/jobs/__name__", 404, "job_not_found"),
        ("/v1/backfills/__x__", 404, "batch_not_found"),
        ("/v1/jobs?status=bogus", 400, "invalid_status"),
        ("/v1/jobs?limit=0", 400, "invalid_limit"),
        ("/v1/jobs?limit=abc", 400, "invalid_limit"),
        ("/v1/jobs?source=nope", 400, "unknown_source"),
        ("/v1/jobs?colour=red", 400, "unknown_parameter"),
        ("/v2/anything", 404, "not_found"),
    ],
)
def test_bad_reads_answer_json_errors(api, path: str, status: int, code: str) -> None:
    r = api.get(path)
    assert r.status_code == status
    assert r.get_json()["error"]["code"] == code


def test_wrong_method_is_405_json(api) -> None:
    r = api.delete("/v1/jobs")
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"


def test_an_unreachable_firestore_answers_503_json_within_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Left to the client's defaults, these calls retried an unreachable Firestore for 300 s."""
    import socket
    import time

    from common.settings import reset_settings

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", closed)
    monkeypatch.setenv("TRIBUTARY_CALL_DEADLINE", "1.5")
    reset_settings()
    clients.reset_clients()
    client = create_app("api", str(FUNCTIONS / "api.py")).test_client()
    for path in ("/v1/jobs/job-1", "/v1/jobs", "/v1/sources"):
        started = time.monotonic()
        r = client.get(path)
        assert time.monotonic() - started < 10, path
        assert r.status_code == 503, (path, r.data)
        assert r.headers["Retry-After"] == "10"
        error = r.get_json()["error"]
        assert error["code"] == "backend_unavailable"
        assert "unavailable or did not answer in time" in error["message"]


def test_sources_lists_gdelt_with_its_schedule(api) -> None:
    sources = api.get("/v1/sources").get_json()["sources"]
    gdelt = next(s for s in sources if s["name"] == "gdelt")
    assert gdelt["schedule"] == {"cron": "3,18,33,48 * * * *", "time_zone": "UTC"}
    assert gdelt["params_schema"]["properties"]["slot"]
    assert gdelt["last_status"] is None


def test_list_filters_by_source_and_status(api) -> None:
    api.post("/v1/jobs", json={"source": "gdelt", "params": {"slot": "20240115120000"}})
    assert len(api.get("/v1/jobs?source=gdelt&status=queued").get_json()["jobs"]) == 1
    assert api.get("/v1/jobs?status=succeeded").get_json()["jobs"] == []


# ---- ingest ---------------------------------------------------------------------------------------
@pytest.fixture
def ingest(gcp: str, topic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def make(root: Path | None = None, base_url: str | None = None):
        if base_url:
            monkeypatch.setenv("TRIBUTARY_GDELT_BASE_URL", base_url)
        return create_app("ingest", str(FUNCTIONS / "ingest.py")).test_client()

    return make


def task(params: dict | None = None, job_id: str = "gdelt-test") -> bytes:
    return TaskPayload(job_id=job_id, source="gdelt", params=params or {}).model_dump_json().encode()


def test_ingest_runs_a_task_and_publishes_started_then_succeeded(ingest, topic, tmp_path: Path) -> None:
    root = gdelt_replay_dir(tmp_path / "replay", [SAMPLE])
    with ReplayServer(root) as server:
        client = ingest(base_url=f"{server.url}/gdelt")
        r = client.post("/gdelt", data=task(), headers={"X-CloudTasks-TaskRetryCount": "0"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["records"] == 24
    events = pull_events(topic[1], expect=2)
    by_type = {e.type: e for e in events}
    assert set(by_type) == {EventType.started, EventType.succeeded}
    done = by_type[EventType.succeeded].data
    assert (done.records, done.watermark, len(done.outputs)) == (24, "20240115120000", 3)
    assert all(Path(uri.removeprefix("file://")).exists() for uri in done.outputs)


def test_md5_mismatch_answers_200_and_publishes_a_permanent_failure(ingest, topic, tmp_path: Path) -> None:
    root = gdelt_replay_dir(tmp_path / "replay", [SAMPLE], corrupt_md5_of="20240115120000")
    with ReplayServer(root) as server:
        r = ingest(base_url=f"{server.url}/gdelt").post("/gdelt", data=task())
    assert r.status_code == 200, "a permanent error must stop Cloud Tasks from retrying"
    failed = [e for e in pull_events(topic[1], expect=2) if e.type is EventType.failed]
    assert failed and failed[0].data.error["kind"] == "permanent"
    assert "md5" in failed[0].data.error["message"]


def test_unreachable_upstream_answers_503_until_the_last_attempt(ingest, topic) -> None:
    from common.local.stack import free_port

    client = ingest(base_url=f"http://127.0.0.1:{free_port()}/gdelt")
    r = client.post("/gdelt", data=task(), headers={"X-CloudTasks-TaskRetryCount": "0"})
    assert r.status_code == 503
    assert r.get_json()["error"]["kind"] == "transient"
    last = get_source("gdelt").queue.max_attempts - 1
    r = client.post("/gdelt", data=task(), headers={"X-CloudTasks-TaskRetryCount": str(last)})
    assert r.status_code == 200
    events = pull_events(topic[1], expect=2)
    assert [e.type for e in events].count(EventType.retrying) == 1
    (failed,) = [e for e in events if e.type is EventType.failed]
    assert failed.data.error["message"].startswith(f"gave up after {last + 1} attempts")


def test_a_malformed_task_answers_400(ingest) -> None:
    r = ingest().post("/gdelt", data=b'{"job_id": 1}')
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_task"


# ---- status ---------------------------------------------------------------------------------------
@pytest.fixture
def status(gcp: str):
    return create_app("status", str(FUNCTIONS / "status.py"), "cloudevent").test_client()


def push(client, event: Event | bytes, message_id: str = "1"):
    data = event if isinstance(event, bytes) else event.to_bytes()
    ce = CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub.googleapis.com/x"},
        {"message": {"data": base64.b64encode(data).decode(), "messageId": message_id}, "subscription": "s"},
    )
    headers, body = to_structured(ce)
    return client.post("/", headers=headers, data=body)


def make(etype: EventType, job_id: str, **data) -> Event:
    return Event.make(etype, EventData(job_id=job_id, source="gdelt", **data))


def test_status_applies_events_once_in_any_order(status, gcp: str) -> None:
    from common.core.jobs import Job
    from common.gcp.firestore import create_job

    create_job(Job(job_id="gdelt-s1", source="gdelt"))
    done = make(EventType.succeeded, "gdelt-s1", records=24, watermark="20240115120000")
    started = make(EventType.started, "gdelt-s1")
    for e in (done, started, done, started):
        assert push(status, e).status_code == 200
    job = get_job("gdelt-s1")
    assert job.status == "succeeded" and job.records == 24
    events = reads.job_events("gdelt-s1")  # the markers, kept in the job document
    assert len(events) == 2
    source = source_states(["gdelt"])["gdelt"]
    assert source["watermark"] == "20240115120000" and source["last_status"] == "succeeded"


def test_unreadable_events_are_acked_not_retried(status) -> None:
    assert push(status, b"not json").status_code == 200
    assert (
        push(status, orjson.dumps({"type": "dev.tributary.job.started", "data": {"schema_version": 99}})).status_code
        == 200
    )


def test_a_multi_part_job_finishes_whatever_order_its_events_arrive_in(status, gcp: str) -> None:
    from common.core.events import PartProgress
    from common.core.jobs import Job
    from common.gcp.firestore import create_job

    create_job(Job(job_id="gdelt-mp", source="gdelt"))
    parts = [  # as common.runtime.ingest does: the part key makes each part's event id distinct
        Event.make(
            EventType.progress,
            EventData(
                job_id="gdelt-mp",
                source="gdelt",
                part=f"p{i}",
                records=10,
                outputs=[f"file:///p{i}"],
                progress=PartProgress(done=1, total=3),
                cursors={"k": f"2024-01-0{i + 1}"},
            ),
            seq=f"p{i}",
        )
        for i in range(3)
    ]
    started = make(EventType.started, "gdelt-mp", progress=PartProgress(done=0, total=3))
    for e in (*parts, parts[1], started):  # every part (one twice) before "started"
        assert push(status, e).status_code == 200
    job = get_job("gdelt-mp")
    assert job.status == "succeeded", job
    assert job.records == 30 and sorted(job.outputs) == ["file:///p0", "file:///p1", "file:///p2"]
    source = source_states(["gdelt"])["gdelt"]
    assert source["cursors"] == {"k": "2024-01-03"}
