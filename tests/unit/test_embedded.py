"""The embedded executor's adapters on SQLite: the state rule, the task queue's limits, the bus, the clock."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from common.core.errors import ConfigError, TransientError
from common.core.events import Event, EventData, EventType, PartProgress
from common.core.jobs import Job, JobStatus
from common.core.tasks import Part, QueueConfig, TaskPayload
from common.embedded.bus import EmbeddedBus
from common.embedded.clock import ScheduleBook
from common.embedded.queue import SqliteDispatcher, backoff
from common.embedded.state import SqliteState
from common.runtime import executors
from common.runtime.worker import latest_firing
from common.settings import Settings

T0 = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)


def ev(etype: EventType, seconds: int, job_id: str = "gdelt-x", attempt: int = 1, **data) -> Event:
    e = Event.make(etype, EventData(job_id=job_id, source="gdelt", attempt=attempt, **data))
    return e.model_copy(update={"time": T0 + timedelta(seconds=seconds)})


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "t.sqlite"


def test_a_job_is_created_once(db: Path) -> None:
    store = SqliteState(db)
    job = Job(job_id="gdelt-x", source="gdelt", params={"slot": "1"})
    assert store.create_job(job)[1] is True
    again, new = store.create_job(Job(job_id="gdelt-x", source="gdelt", params={"slot": "2"}))
    assert new is False and again.params == {"slot": "1"}
    assert [j.job_id for j in store.list_jobs(source="gdelt", status="queued")] == ["gdelt-x"]
    assert store.count_by({"status": "queued"}) == 1 and store.statuses(["gdelt-x", "nope"]) == ["queued", None]


def test_events_apply_once_in_any_order_and_unknown_jobs_write_nothing(db: Path) -> None:
    store = SqliteState(db)
    store.create_job(Job(job_id="gdelt-x", source="gdelt", created_at=T0, updated_at=T0))
    done = ev(EventType.succeeded, 5, records=7, watermark="20240115120000")
    assert store.record_event(done).status is JobStatus.succeeded  # before its "started": order does not matter
    assert store.record_event(ev(EventType.started, 1)).status is JobStatus.succeeded
    assert store.record_event(done).records == 7  # a redelivery changes nothing
    assert store.record_event(
        ev(EventType.failed, 9, attempt=2, error={"kind": "permanent", "message": "x"})
    ).status is (JobStatus.succeeded)  # a success beats a later failure
    assert store.record_event(ev(EventType.started, 1, job_id="gdelt-unknown")) is None
    assert store.get_job("gdelt-unknown") is None
    n = store.db.read("SELECT count(*) AS n FROM job_events")[0]["n"]
    assert n == 3
    state = store.source_state("gdelt")
    assert state.watermark == "20240115120000" and state.last_status == "succeeded"
    assert store.source_states(["gdelt"])["gdelt"]["last_job_id"] == "gdelt-x"


def test_a_watermark_only_moves_forward(db: Path) -> None:
    store = SqliteState(db)
    for job_id, mark in (("gdelt-b", "2024-02"), ("gdelt-a", "2024-01")):
        store.create_job(Job(job_id=job_id, source="gdelt"))
        store.record_event(ev(EventType.succeeded, 1, job_id=job_id, watermark=mark, cursors={"k": mark}))
    assert store.source_state("gdelt").watermark == "2024-02"
    assert store.source_state("gdelt").cursors == {"k": "2024-02"}


def test_a_multi_part_job_succeeds_when_its_last_part_lands_whatever_the_order(db: Path) -> None:
    store = SqliteState(db)
    store.create_job(Job(job_id="gdelt-x", source="gdelt"))

    def part(key: str, seconds: int) -> Event:
        e = ev(
            EventType.progress,
            seconds,
            part=key,
            records=2,
            outputs=[f"file:///{key}"],
            progress=PartProgress(done=1, total=3),
        )
        return Event.make(EventType.progress, e.data, seq=key).model_copy(update={"time": e.time})

    store.record_event(part("a", 2))  # a part before the job's "started"
    assert (
        store.record_event(ev(EventType.started, 1, progress=PartProgress(done=0, total=3))).status is JobStatus.running
    )
    assert store.get_job("gdelt-x").progress.done == 1
    store.record_event(part("b", 3))
    store.record_event(part("b", 3))  # redelivered
    job = store.record_event(part("c", 4))
    assert job.status is JobStatus.succeeded and job.records == 6 and len(job.outputs) == 3
    assert store.finish_if_complete("gdelt-x").status is JobStatus.succeeded


def test_batches_and_dead_letters(db: Path) -> None:
    store = SqliteState(db)
    assert store.create_batch("b1", {"total": 1}) is None
    assert store.create_batch("b1", {"total": 2}) == {"total": 1}
    store.put_batch("b1", {"total": 3})
    assert store.get_batch("b1") == {"total": 3} and store.get_batch("b2") is None
    store.record_dead_letter("m1", b"junk", "unreadable")
    assert [(d.id, d.data) for d in store.dead_letters(10)] == [("m1", b"junk")]
    store.delete_dead_letter("m1")
    assert store.dead_letters(10) == []


QUEUE = QueueConfig(
    max_dispatches_per_second=100, max_concurrent_dispatches=2, max_attempts=3, min_backoff=1, max_backoff=8
)


def payload(job_id: str, part: Part | None = None) -> TaskPayload:
    return TaskPayload(job_id=job_id, source="gdelt", params={}, part=part)


def test_a_task_id_is_enqueued_once_and_listed_until_done(db: Path) -> None:
    q = SqliteDispatcher(db)
    assert q.enqueue(payload("gdelt-a"), QUEUE) is True
    assert q.enqueue(payload("gdelt-a"), QUEUE) is False
    assert q.enqueue_many([payload("gdelt-a"), payload("gdelt-b"), payload("gdelt-b", Part(key="p/1"))], QUEUE) == (
        2,
        1,
    )
    assert sorted(q.pending("gdelt")) == ["gdelt-a", "gdelt-b", "gdelt-b--p-1"]
    claim = q.claim()
    assert claim is not None and claim.attempt == 1 and claim.payload.job_id == "gdelt-a"
    q.done(claim)
    assert "gdelt-a" not in q.pending("gdelt")


def test_claims_honour_concurrency_rate_and_schedule_time(db: Path) -> None:
    q = SqliteDispatcher(db)
    q.enqueue_many([payload(f"gdelt-{i}") for i in range(4)], QUEUE)
    later = datetime.now(UTC) + timedelta(hours=1)
    q.enqueue(payload("gdelt-later"), QUEUE, schedule_time=later)
    now = datetime.now(UTC).timestamp()
    first, second = q.claim(now), q.claim(now)
    assert first and second and q.claim(now) is None  # max_concurrent_dispatches = 2
    q.done(first)
    assert q.claim(now + 1) is not None
    slow = QueueConfig(max_dispatches_per_second=0.5, max_concurrent_dispatches=10)
    q2 = SqliteDispatcher(db.with_name("slow.sqlite"))
    q2.enqueue_many([TaskPayload(job_id=f"fred-{i}", source="fred", params={}) for i in range(3)], slow)
    t = datetime.now(UTC).timestamp()
    assert q2.claim(t) is not None and q2.claim(t) is None and q2.claim(t + 2.1) is not None  # 1 per 2 s
    assert "gdelt-later" not in [c.payload.job_id for c in filter(None, (q.claim(now + 5) for _ in range(5)))]


def test_backoff_doubles_then_grows_linearly_up_to_its_cap() -> None:
    queue = QueueConfig(min_backoff=10, max_backoff=300, max_doublings=2)
    assert [backoff(queue, a) for a in range(1, 7)] == [10, 20, 40, 80, 120, 160]
    assert backoff(queue, 20) == 300


def test_a_retry_waits_its_backoff_and_a_dead_lease_is_claimed_again(db: Path) -> None:
    q = SqliteDispatcher(db, lease=5)
    q.enqueue(payload("gdelt-a"), QUEUE)
    now = datetime.now(UTC).timestamp()
    claim = q.claim(now)
    q.retry(claim)
    assert q.claim(now) is None and q.claim(now + 1.5).attempt == 2  # min_backoff 1 s
    # The worker holding attempt 2 dies: after its lease the task runs again, until max_attempts is used up.
    third = q.claim(now + 100)
    assert third.attempt == 3
    assert q.claim(now + 200) is None and q.pending("gdelt") == []  # Cloud Tasks would drop it too


def test_recover_releases_the_leases_of_a_dead_process_at_once(db: Path) -> None:
    q = SqliteDispatcher(db, lease=3600)
    q.enqueue(payload("gdelt-a"), QUEUE)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    claim = q.claim()
    q.db.connection().execute("UPDATE tasks SET owner = ?", (f"{q.owner.rsplit(':', 1)[0]}:{dead.stdout.strip()}",))
    assert q.claim() is None
    assert q.recover() == 1
    again = q.claim()
    assert again is not None and again.task_id == claim.task_id and again.attempt == 2


def test_the_bus_applies_each_event_once_in_order_and_keeps_what_it_could_not_apply(db: Path) -> None:
    seen: list[str] = []
    failing = {"on": True}

    def consumer(body: bytes, event_id: str) -> None:
        if failing["on"] and event_id.endswith("succeeded.0"):
            raise TransientError("locked")
        seen.append(event_id)

    bus = EmbeddedBus(db, consumer)
    started, done = ev(EventType.started, 1), ev(EventType.succeeded, 2)
    bus.publish(started)
    bus.publish(done)
    assert seen == [started.id] and bus.waiting() == 1
    failing["on"] = False
    bus.publish(done)  # a republished event that still waits is stored once
    assert seen == [started.id, done.id] and bus.waiting() == 0
    bus.publish(started)  # one already applied is delivered again: the state's marker makes that a no-op
    assert seen == [started.id, done.id, started.id]


def test_the_clock_fires_the_latest_missed_firing_once(db: Path) -> None:
    after = datetime(2024, 1, 15, 4, 0, tzinfo=UTC)
    now = datetime(2024, 1, 17, 4, 30, tzinfo=UTC)
    fire = latest_firing("0 6 * * *", "America/New_York", after, now)
    assert fire == datetime(2024, 1, 16, 6, 0, tzinfo=fire.tzinfo) and fire.utcoffset() == timedelta(hours=-5)
    assert latest_firing("0 6 * * *", "UTC", now, now + timedelta(minutes=5)) is None
    book = ScheduleBook(db)
    assert book.claim("gdelt", fire) is True and book.claim("gdelt", fire) is False
    assert book.last("gdelt") == fire


def test_profiles_and_routes_choose_the_adapters(tmp_path: Path) -> None:
    s = Settings(profile="embedded", sqlite_path=str(tmp_path / "x.sqlite"), dispatch_routes="fred=cloudtasks")
    assert executors.chosen(s) == ("embedded", "embedded", "sqlite")
    assert executors.chosen(Settings()) == ("cloudtasks", "pubsub", "firestore")
    assert executors.chosen(Settings(state="sqlite")) == ("cloudtasks", "pubsub", "sqlite")
    assert type(executors.dispatcher("gdelt", s)).__name__ == "SqliteDispatcher"
    assert type(executors.dispatcher("fred", s)).__name__ == "CloudTasksDispatcher"
    assert type(executors.state(s)).__name__ == "SqliteState"
    with pytest.raises(ConfigError, match="TRIBUTARY_DISPATCH_ROUTES"):
        executors.routes(Settings(dispatch_routes="fred=nowhere"))
    with pytest.raises(ConfigError, match="TRIBUTARY_STATE"):
        executors.state(Settings(state="mongo"))


def test_the_gcp_profile_imports_no_embedded_adapter() -> None:
    code = (
        "import sys; from common.runtime import executors, ingest, status; from common.runtime.api import handlers; "
        "assert not [m for m in sys.modules if m.startswith('common.embedded')], 'embedded imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_an_operator_can_update_pause_and_purge_a_queue(db: Path) -> None:
    q = SqliteDispatcher(db)
    q.enqueue_many([payload("gdelt-a"), payload("gdelt-b")], QUEUE)
    q.update_queue("gdelt", max_concurrent_dispatches=1, min_backoff=0.1)
    q.enqueue(payload("gdelt-c"), QUEUE)  # a later enqueue keeps the change
    first = q.claim()
    assert first.queue.max_concurrent_dispatches == 1 and first.queue.min_backoff == 0.1 and q.claim() is None
    q.done(first)
    q.pause("gdelt")
    assert q.claim() is None
    q.pause("gdelt", False)
    assert q.delete_job_tasks("gdelt-b", "gdelt") == 1 and q.purge("gdelt") == 1 and q.pending("gdelt") == []
    assert q.set_queue_state("gdelt", "pause").state == "PAUSED"
    with pytest.raises(TypeError):
        q.update_queue("gdelt", no_such_field=1)


def test_dead_letters_are_listed_and_replayed_on_the_embedded_profile(tmp_path: Path) -> None:
    from common.ops import dlq
    from common.settings import use_settings

    s = Settings(profile="embedded", sqlite_path=str(tmp_path / "x.sqlite"))
    with use_settings(s):
        store = executors.state()
        store.create_job(Job(job_id="gdelt-x", source="gdelt"))
        executors.events().publish(Event.make(EventType.started, EventData(job_id="gdelt-x", source="gdelt")))
        executors.events().publish(Event.make(EventType.started, EventData(job_id="gdelt-x", source="gdelt"), seq="1"))
        late = ev(EventType.succeeded, 5, records=3)
        store.record_dead_letter("m1", late.to_bytes(), "kept")
        store.record_dead_letter("m2", b"not an event", "unreadable")
        assert [(d.id, d.where) for d in dlq.list_dead()] == [("m1", "sqlite"), ("m2", "sqlite")]
        outcomes = dict(dlq.replay())
        assert outcomes["m1"].startswith("applied") and "unreadable" in outcomes["m2"]
        assert [d.id for d in dlq.list_dead()] == ["m2"] and store.get_job("gdelt-x").status is JobStatus.succeeded
