"""Operations on the real emulators: the reaper (no orphaned job) and the dead-letter path."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from common.core.events import Event, EventData, EventType
from common.core.jobs import Job
from common.gcp import clients
from common.gcp.firestore import create_job, get_job, record_event
from common.gcp.tasks import TaskPayload, enqueue, ensure_queue, queue_path
from common.ops.dlq import list_dead, record, replay
from common.runtime.reaper import reap
from common.runtime.status import handle_pubsub
from common.sources import get_source

T0 = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def queue(gcp: str, tasks_emulator) -> str:
    source = get_source("gdelt")
    ensure_queue(source)
    clients.tasks().pause_queue(name=queue_path("gdelt"))  # keep tasks in the queue, undispatched
    return queue_path("gdelt")


def running_job(job_id: str, at: datetime) -> Job:
    create_job(Job(job_id=job_id, source="gdelt", created_at=at, updated_at=at))
    started = Event.make(EventType.started, EventData(job_id=job_id, source="gdelt", attempt=3))
    return record_event(started.model_copy(update={"time": at}))


def test_a_silent_running_job_with_no_task_left_is_failed_with_a_reason(queue) -> None:
    running_job("gdelt-stuck", T0)
    done = reap(now=T0 + timedelta(hours=2))
    assert [(r.job_id, r.action) for r in done] == [("gdelt-stuck", "failed")]
    job = get_job("gdelt-stuck")
    assert job.status == "failed" and job.error.type == "Reaped"
    assert "no progress for 7200 s" in job.error.message and "new Idempotency-Key" in job.error.message
    assert reap(now=T0 + timedelta(hours=3)) == [], "a reaped job is final"


def test_a_running_job_whose_task_is_still_queued_is_kept(queue) -> None:
    running_job("gdelt-waiting", T0)
    enqueue(TaskPayload(job_id="gdelt-waiting", source="gdelt", params={}), get_source("gdelt"))
    done = reap(now=T0 + timedelta(hours=2))
    assert [(r.job_id, r.action) for r in done] == [("gdelt-waiting", "kept")]
    assert get_job("gdelt-waiting").status == "running"


def test_a_recent_running_job_is_left_alone(queue) -> None:
    running_job("gdelt-busy", T0)
    assert reap(now=T0 + timedelta(minutes=5)) == []


def test_a_stale_queued_job_is_enqueued_again_once(queue) -> None:
    create_job(Job(job_id="gdelt-lost", source="gdelt", params={"slot": "20240115120000"}, created_at=T0))
    assert [r.action for r in reap(now=T0 + timedelta(hours=1))] == ["re-enqueued"]
    names = [t.name for t in clients.tasks().list_tasks(parent=queue)]
    assert names == [f"{queue}/tasks/gdelt-lost"]
    assert [r.action for r in reap(now=T0 + timedelta(hours=1))] == ["kept"], "the task name dedups"


def test_dry_run_changes_nothing(queue) -> None:
    running_job("gdelt-stuck2", T0)
    assert [r.action for r in reap(now=T0 + timedelta(hours=2), dry_run=True)] == ["failed"]
    assert get_job("gdelt-stuck2").status == "running"


def push_data(raw: bytes, message_id: str) -> dict:
    return {"message": {"data": base64.b64encode(raw).decode(), "messageId": message_id}, "subscription": "s"}


def test_unreadable_events_are_kept_as_dead_letters_and_can_be_listed(gcp: str) -> None:
    assert handle_pubsub(push_data(b"{broken", "m-1")) is None
    assert handle_pubsub(push_data(b"{broken", "m-1")) is None, "redelivery is idempotent"
    (letter,) = list_dead()
    assert (letter.id, letter.where, letter.data) == ("m-1", "firestore", b"{broken")
    assert "not JSON" in letter.reason
    ((letter_id, outcome),) = replay()
    assert letter_id == "m-1" and outcome.startswith("still unreadable: event body is not JSON")


def test_an_envelope_whose_data_is_not_base64_is_kept_not_retried(gcp: str) -> None:
    assert handle_pubsub({"message": {"data": "%%% not base64", "messageId": "m-3"}}) is None
    (letter,) = list_dead()
    assert letter.id == "m-3" and "not base64" in letter.reason


def test_replay_applies_a_dead_letter_and_removes_it(gcp: str) -> None:
    create_job(Job(job_id="gdelt-dl", source="gdelt"))
    event = Event.make(EventType.succeeded, EventData(job_id="gdelt-dl", source="gdelt", records=5))
    record("m-2", event.to_bytes(), "status function was down")
    results = replay({"m-2"})
    assert results == [("m-2", "applied: job gdelt-dl is succeeded")]
    assert get_job("gdelt-dl").records == 5
    assert list_dead() == []
