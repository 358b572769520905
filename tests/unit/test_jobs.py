"""The job state machine: monotonic, terminal final, and indifferent to delivery order and duplicates."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from common.core.events import Event, EventData, EventType, PartProgress
from common.core.jobs import Job, JobStatus, apply_event, job_id_for

T0 = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)


def ev(etype: EventType, seconds: int, **data) -> Event:
    e = Event.make(etype, EventData(job_id="gdelt-x", source="gdelt", **data))
    return e.model_copy(update={"time": T0 + timedelta(seconds=seconds)})


def replay(events: list[Event]) -> Job:
    job = Job(job_id="gdelt-x", source="gdelt", created_at=T0, updated_at=T0)
    seen: set[str] = set()
    for e in events:
        if e.id in seen:  # the store's event markers do this
            continue
        seen.add(e.id)
        job = apply_event(job, e) or job
    return job


def test_happy_path() -> None:
    job = replay([ev(EventType.started, 1), ev(EventType.succeeded, 5, records=24, outputs=["file:///a"])])
    assert job.status is JobStatus.succeeded
    assert (job.records, job.outputs, job.started_at, job.finished_at) == (
        24,
        ["file:///a"],
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=5),
    )


def test_any_order_of_the_same_events_gives_the_same_job() -> None:
    events = [
        ev(EventType.started, 1),
        ev(EventType.retrying, 2, error={"kind": "transient", "message": "503"}),
        ev(EventType.started, 3, attempt=2),
        ev(EventType.succeeded, 9, attempt=2, records=7),
    ]
    outcomes = {replay(list(order)).model_dump_json() for order in itertools.permutations(events)}
    results = {
        (replay(list(o)).status, replay(list(o)).records, replay(list(o)).attempt)
        for o in itertools.permutations(events)
    }
    assert results == {(JobStatus.succeeded, 7, 2)}
    assert len(outcomes) == 1, "started_at too must not depend on order"


def test_terminal_states_are_final() -> None:
    job = replay([ev(EventType.failed, 2, error={"kind": "permanent", "message": "md5 mismatch"})])
    assert job.status is JobStatus.failed
    assert apply_event(job, ev(EventType.succeeded, 3, records=5)) is None
    assert apply_event(job, ev(EventType.progress, 4, progress=PartProgress(done=1, total=2))) is None


def test_first_terminal_event_wins() -> None:
    job = replay(
        [ev(EventType.succeeded, 2, records=3), ev(EventType.failed, 1, error={"kind": "permanent", "message": "x"})]
    )
    assert job.status is JobStatus.succeeded


def test_duplicates_change_nothing() -> None:
    once = replay([ev(EventType.started, 1), ev(EventType.succeeded, 2, records=3)])
    many = replay([ev(EventType.started, 1)] * 3 + [ev(EventType.succeeded, 2, records=3)] * 3)
    assert once == many


def test_progress_only_grows() -> None:
    job = replay(
        [
            ev(EventType.started, 1, progress=PartProgress(done=0, total=4)),
            ev(EventType.progress, 3, progress=PartProgress(done=3, total=4)),
        ]
    )
    late = ev(EventType.progress, 2, progress=PartProgress(done=1, total=4))
    job = apply_event(job, late) or job
    assert job.progress is not None and job.progress.done == 3


def test_retrying_keeps_the_job_running_with_the_error() -> None:
    job = replay([ev(EventType.retrying, 1, error={"kind": "transient", "message": "upstream answered 503"})])
    assert job.status is JobStatus.running
    assert job.error is not None and job.error.kind == "transient"


def test_job_ids_are_deterministic_and_task_safe() -> None:
    a = job_id_for("gdelt", {"slot": "1", "streams": ["events"]})
    assert a == job_id_for("gdelt", {"streams": ["events"], "slot": "1"})
    assert a != job_id_for("gdelt", {"slot": "2", "streams": ["events"]})
    assert job_id_for("gdelt", {"slot": "1"}, "key-1") == job_id_for("gdelt", {"slot": "2"}, "key-1")
    assert all(c.isalnum() or c in "-_" for c in a)


def test_event_round_trips_as_a_cloudevent() -> None:
    e = ev(EventType.succeeded, 1, records=3, outputs=["gs://b/x"], cursors={"DFF": "2024-01-01"})
    back = Event.from_bytes(e.to_bytes())
    assert back == e
    ce = e.to_cloudevent()
    assert ce["type"] == "dev.tributary.job.succeeded" and ce["specversion"] == "1.0"
