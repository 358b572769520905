"""The job state machine: monotonic, terminal final, and indifferent to delivery order and duplicates."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from common.core.events import Event, EventData, EventType, PartProgress
from common.core.jobs import Job, JobStatus, apply_event, cancel_event, job_id_for, new_run

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


def test_a_terminal_status_never_goes_back_to_running() -> None:
    job = replay([ev(EventType.failed, 2, error={"kind": "permanent", "message": "md5 mismatch"})])
    assert job.status is JobStatus.failed
    later = apply_event(job, ev(EventType.progress, 4, progress=PartProgress(done=1, total=2))) or job
    assert later.status is JobStatus.failed and later.error == job.error and later.finished_at == job.finished_at
    assert apply_event(job, ev(EventType.failed, 2, error={"kind": "permanent", "message": "md5 mismatch"})) is None


def test_a_success_beats_a_failure_whichever_arrives_first() -> None:
    """Attempt 1 succeeded (its outputs exist) and attempt 2 failed: the job succeeded, with attempt 1's records."""
    ok = ev(EventType.succeeded, 2, records=3, outputs=["file:///a1"])
    ko = ev(EventType.failed, 5, attempt=2, error={"kind": "permanent", "message": "x"})
    for order in ([ok, ko], [ko, ok]):
        job = replay(order)
        assert (job.status, job.records, job.outputs, job.error) == (JobStatus.succeeded, 3, ["file:///a1"], None)
        assert job.finished_at == T0 + timedelta(seconds=2) and job.attempt == 2


def test_between_two_outcomes_of_a_kind_the_later_attempt_wins() -> None:
    a1 = ev(EventType.succeeded, 9, records=3, outputs=["file:///x"])
    a2 = ev(EventType.succeeded, 4, attempt=2, records=4, outputs=["file:///x"])
    f1 = ev(EventType.failed, 9, error={"kind": "permanent", "message": "one"})
    f2 = ev(EventType.failed, 4, attempt=2, error={"kind": "transient", "message": "two"})
    assert replay([a2, a1]).records == replay([a1, a2]).records == 4
    assert replay([f2, f1]).error == replay([f1, f2]).error
    assert replay([f1, f2]).error is not None and replay([f1, f2]).error.message == "two"


# Every kind of event a job can see, from two attempts, a redelivery included.
POOL = [
    ev(EventType.started, 1, progress=PartProgress(done=0, total=3)),
    ev(EventType.retrying, 2, error={"kind": "transient", "message": "503"}),
    ev(EventType.progress, 3, progress=PartProgress(done=2, total=3)),
    ev(EventType.started, 4, attempt=2),
    ev(EventType.retrying, 5, attempt=2, error={"kind": "transient", "message": "reset"}),
    ev(EventType.succeeded, 6, records=5, bytes=10, outputs=["file:///p1"]),
    ev(EventType.failed, 7, attempt=2, error={"kind": "permanent", "message": "md5"}),
    ev(EventType.failed, 8, error={"kind": "transient", "message": "gave up"}),
    ev(EventType.succeeded, 9, attempt=2, records=6, bytes=11, outputs=["file:///p2"]),
    ev(EventType.succeeded, 6, records=5, bytes=10, outputs=["file:///p1"]),
    ev(EventType.cancelled, 10, attempt=0),
]


def _one_outcome(events: tuple[Event, ...]) -> set[str]:
    return {replay(list(order)).model_dump_json() for order in itertools.permutations(events)}


@pytest.mark.parametrize("size", [2, 3])
def test_every_order_of_every_pair_and_triple_gives_one_job(size: int) -> None:
    for events in itertools.combinations(POOL, size):
        assert len(_one_outcome(events)) == 1, [e.id for e in events]


def test_a_cancel_beats_every_outcome_of_its_run_in_any_order() -> None:
    cancel = ev(EventType.cancelled, 3, attempt=0)
    for events in itertools.combinations(POOL[:-1], 2):
        (only,) = _one_outcome((*events, cancel))
        job = Job.model_validate_json(only)
        assert job.status is JobStatus.cancelled and job.finished_at == T0 + timedelta(seconds=3), job


def test_a_queued_job_cancelled_never_started() -> None:
    job = replay([ev(EventType.cancelled, 3, attempt=0)])
    assert (job.status, job.started_at, job.attempt) == (JobStatus.cancelled, None, 0)


def run2(etype: EventType, seconds: int, **data) -> Event:
    return ev(etype, seconds, run=2, **data)


def test_a_retry_is_a_new_run_that_events_of_the_old_run_never_change() -> None:
    """Run 1 failed; the retry starts run 2. Any interleaving of late run-1 events with run 2's gives run 2's job."""
    first = replay([ev(EventType.started, 1), ev(EventType.failed, 2, error={"kind": "permanent", "message": "key"})])
    retried = new_run(first, T0 + timedelta(seconds=5))
    assert (retried.status, retried.run, retried.attempt, retried.error) == (JobStatus.queued, 2, 0, None)
    old = [POOL[1], POOL[5], POOL[8], POOL[-1]]  # retrying, succeeded (both attempts), cancelled: all of run 1
    new = [run2(EventType.started, 6), run2(EventType.retrying, 7, error={"kind": "transient", "message": "503"}),
           run2(EventType.succeeded, 9, attempt=2, records=4, outputs=["file:///r2"])]  # fmt: skip
    assert {e.id for e in new}.isdisjoint(e.id for e in POOL), "a run's event ids are its own"

    def on(job: Job, events: tuple[Event, ...]) -> str:
        for e in events:
            job = apply_event(job, e) or job
        return job.model_dump_json()

    expected = on(retried, tuple(new))
    for events in itertools.combinations(old + new, 4):
        assert {on(retried, order) for order in itertools.permutations(events)} == {
            on(retried, tuple(e for e in events if e.data.run == 2))
        }
    done = Job.model_validate_json(expected)
    assert (done.status, done.records, done.outputs, done.attempt) == (JobStatus.succeeded, 4, ["file:///r2"], 2)
    runs = done.public()["runs"]
    assert [(r["run"], r["status"]) for r in runs] == [(1, "failed"), (2, "succeeded")]
    assert runs[0]["error"]["message"] == "key" and runs[0]["attempt"] == 1 and runs[1]["attempt"] == 2


def test_only_a_failed_or_cancelled_job_can_run_again() -> None:
    for events in ([], [ev(EventType.started, 1)], [ev(EventType.succeeded, 1)]):
        with pytest.raises(ValueError, match="only a failed or cancelled job"):
            new_run(replay(events), T0)
    cancelled = replay([ev(EventType.started, 1)])
    cancelled = apply_event(cancelled, cancel_event(cancelled, T0 + timedelta(seconds=2))) or cancelled
    assert cancelled.status is JobStatus.cancelled
    again = new_run(new_run_ok := cancelled, T0 + timedelta(seconds=3))
    assert again.run == 2 and again.runs[0].status is JobStatus.cancelled and new_run_ok.run == 1
    assert apply_event(again, cancel_event(cancelled, T0 + timedelta(seconds=4))) is None, "run 1's cancel"
    assert cancel_event(again, T0).id != cancel_event(cancelled, T0).id


def test_a_job_stored_before_runs_existed_reads_as_run_one() -> None:
    job = Job.model_validate({"job_id": "gdelt-x", "source": "gdelt", "status": "failed"})
    assert job.run == 1 and job.runs == [] and [r["run"] for r in job.public()["runs"]] == [1]
    assert ev(EventType.started, 1).id == "gdelt-x.1.started.0", "run 1's event ids are unchanged"


def test_every_order_of_a_whole_story_gives_one_job() -> None:
    story = (POOL[0], POOL[1], POOL[3], POOL[5], POOL[6], POOL[2])
    (only,) = _one_outcome(story)
    job = Job.model_validate_json(only)
    assert (job.status, job.records, job.outputs, job.attempt) == (JobStatus.succeeded, 5, ["file:///p1"], 2)
    assert job.progress is not None and job.progress.done == job.progress.total == 3
    assert job.started_at == T0 + timedelta(seconds=1) and job.finished_at == T0 + timedelta(seconds=6)


def test_the_deciding_key_is_not_part_of_the_public_answer() -> None:
    job = replay([ev(EventType.succeeded, 1)])
    assert job.decided_by and "decided_by" not in job.public()


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
