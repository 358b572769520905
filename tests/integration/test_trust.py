"""Trust boundaries and event order on the real emulators: events of unknown jobs, a task sent to another
source's URL, and conflicting terminal events of one job (RELIABILITY.md, "Hardening: trust boundaries")."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app

import common.runtime.status
from common.core.events import Event, EventData, EventType
from common.core.jobs import Job
from common.gcp import clients
from common.gcp.firestore import create_job, get_job, source_states
from common.gcp.tasks import TaskPayload
from tests.conftest import pull_events

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


@pytest.fixture
def status(gcp: str):
    return create_app("status", str(FUNCTIONS / "status.py"), "cloudevent").test_client()


def push(client, event: Event):
    ce = CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub.googleapis.com/x"},
        {"message": {"data": base64.b64encode(event.to_bytes()).decode(), "messageId": "1"}, "subscription": "s"},
    )
    headers, body = to_structured(ce)
    return client.post("/", headers=headers, data=body)


def make(etype: EventType, job_id: str, source: str = "gdelt", **data) -> Event:
    return Event.make(etype, EventData(job_id=job_id, source=source, **data))


def test_an_event_for_a_job_never_created_makes_no_phantom_job(status, caplog: pytest.LogCaptureFixture) -> None:
    before = sum(common.runtime.status.IGNORED_UNKNOWN.values())
    with caplog.at_level(logging.WARNING, "tributary.status"):
        for etype in (EventType.started, EventType.succeeded):
            assert push(status, make(etype, "gdelt-phantom", records=5)).status_code == 200
    assert get_job("gdelt-phantom") is None
    doc = clients.firestore().collection("jobs").document("gdelt-phantom")
    assert list(doc.collection("events").stream()) == [], "not even an event marker"
    assert sum(common.runtime.status.IGNORED_UNKNOWN.values()) == before + 2
    assert "was never created" in caplog.text and "unknown_job_events=" in caplog.text


def test_an_event_naming_another_source_changes_nothing(status) -> None:
    create_job(Job(job_id="gdelt-theirs", source="gdelt"))
    assert push(status, make(EventType.failed, "gdelt-theirs", source="fred")).status_code == 200
    assert get_job("gdelt-theirs").status == "queued"


@pytest.mark.parametrize("success_first", [True, False])
def test_a_success_beats_a_later_attempts_failure_in_either_order(status, gcp: str, success_first: bool) -> None:
    job_id = f"gdelt-conflict-{success_first}"
    create_job(Job(job_id=job_id, source="gdelt"))
    ok = make(EventType.succeeded, job_id, records=24, outputs=["file:///a1"], watermark="20240115120000")
    ko = make(EventType.failed, job_id, attempt=2, error={"kind": "permanent", "message": "md5"})
    for e in (ok, ko) if success_first else (ko, ok):
        assert push(status, e).status_code == 200
    job = get_job(job_id)
    assert (job.status, job.records, job.outputs, job.error) == ("succeeded", 24, ["file:///a1"], None)
    run = clients.firestore().collection("sources").document("gdelt").collection("runs").document(job_id).get()
    assert run.to_dict()["status"] == "succeeded"
    assert source_states(["gdelt"])["gdelt"]["watermark"] >= "20240115120000"


# ---- ingest: the URL's source is the task's source -------------------------------------------------
@pytest.mark.parametrize("path", ["/gdelt", "/gdelt/"])
def test_a_task_sent_to_another_sources_url_is_refused_and_runs_nothing(gcp: str, topic, path: str) -> None:
    client = create_app("ingest", str(FUNCTIONS / "ingest.py")).test_client()
    body = TaskPayload(job_id="fred-x", source="fred", params={"series": ["DFF"]}).model_dump_json()
    r = client.post(path, data=body.encode(), headers={"X-CloudTasks-TaskRetryCount": "0"})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "wrong_source"
    assert "'fred'" in r.get_json()["error"]["message"]
    assert pull_events(topic[1], expect=1, timeout=2.0) == []


def test_a_deployed_functions_source_must_match_too(gcp: str, topic, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIBUTARY_SOURCE", "gdelt")
    from common.settings import reset_settings

    reset_settings()
    client = create_app("ingest", str(FUNCTIONS / "ingest.py")).test_client()
    body = TaskPayload(job_id="fred-x", source="fred", params={}).model_dump_json()
    r = client.post("/", data=body.encode())
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "wrong_source"


# ---- api: the planner's hint is not a caller's to give ----------------------------------------------
@pytest.fixture
def api(gcp: str, tasks_emulator):
    from common.gcp.tasks import ensure_queue
    from common.sources import get_source

    ensure_queue(get_source("gdelt"))
    return create_app("api", str(FUNCTIONS / "api.py")).test_client()


FORGED = {"events": [1, "0" * 32]}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/jobs", {"source": "gdelt", "params": {"expected": FORGED}}, "params.expected"),
        ("/v1/jobs", {"source": "gdelt", "params": {"slot": "20240115120000", "expected": FORGED}}, "params.expected"),
        ("/v1/jobs", {"source": "gdelt", "params": {"slot": "20991231234500"}}, "params.slot"),
        (
            "/v1/backfills",
            {"source": "gdelt", "start": "2024-01-15", "end": "2024-01-15", "params": {"expected": FORGED}},
            "params.expected",
        ),
    ],
)
def test_a_hint_or_a_future_slot_is_refused_and_the_scheduler_still_gets_its_job(api, path, body, field) -> None:
    r = api.post(path, json=body)
    assert r.status_code == 400, r.get_data(as_text=True)
    assert r.get_json()["error"]["field"] == field
    tick = api.post("/v1/jobs", json={"source": "gdelt", "params": {}})
    assert tick.status_code == 202 and tick.headers.get("Idempotent-Replayed") != "true"
    assert tick.get_json()["status"] == "queued"


@pytest.mark.parametrize("failure_first", [True, False])
def test_a_multi_part_job_whose_parts_all_landed_succeeds_whatever_failed_first(status, failure_first: bool) -> None:
    from common.core.events import PartProgress

    job_id = f"gdelt-mp-{failure_first}"
    create_job(Job(job_id=job_id, source="gdelt"))
    started = make(EventType.started, job_id, progress=PartProgress(done=0, total=2))
    parts = [
        Event.make(
            EventType.progress,
            EventData(
                job_id=job_id,
                source="gdelt",
                part=f"p{i}",
                records=10,
                outputs=[f"file:///p{i}"],
                progress=PartProgress(done=1, total=2),
            ),
            seq=f"p{i}",
        )
        for i in range(2)
    ]
    failed = make(EventType.failed, job_id, attempt=2, error={"kind": "permanent", "message": "a duplicate lost"})
    order = [started, failed, *parts] if failure_first else [started, *parts, failed]
    for e in order:
        assert push(status, e).status_code == 200
    job = get_job(job_id)
    assert (job.status, job.records, job.error) == ("succeeded", 20, None), job
