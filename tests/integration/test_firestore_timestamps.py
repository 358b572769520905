"""Times in Firestore are Timestamps with an ``expire_at`` for TTL, on the real emulator; documents of the
previous version (ISO strings) still load, and newest-first queries order both kinds by time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.core.batches import Batch
from common.core.events import Event, EventData, EventType
from common.core.jobs import Job
from common.gcp.firestore import batches, create_job, deadletters, get_job, list_jobs, record_event
from common.gcp.firestore.codec import EXPIRE_AT, as_datetime, from_firestore
from common.gcp.firestore.markers import EVENTS_FIELD
from common.gcp.firestore.query import db
from common.gcp.firestore.sources import last_runs, source_state, source_states
from common.gcp.names import JOBS, RUNS, SOURCES
from common.settings import reset_settings

T0 = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def fs(gcp: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TRIBUTARY_RETENTION_DAYS", "7")
    reset_settings()
    return gcp


def raw(path: str) -> dict:
    return db().document(path).get().to_dict()


def job(job_id: str, created: datetime, source: str = "gdelt") -> Job:
    return Job(job_id=job_id, source=source, params={"slot": "x"}, created_at=created, updated_at=created)


def old_version(j: Job) -> None:
    """Write ``j`` as the previous version did: every time an ISO string, no expire_at."""
    db().collection(JOBS).document(j.job_id).set(j.model_dump(mode="json"))


def test_a_job_is_stored_with_timestamps_and_expires_after_the_retention(fs: str) -> None:
    j = job("gdelt-ts1", T0)
    create_job(j)
    stored = raw(f"{JOBS}/gdelt-ts1")
    assert isinstance(stored["created_at"], datetime) and stored["created_at"] == T0  # a Timestamp, not text
    assert stored[EXPIRE_AT] == T0 + timedelta(days=7)
    loaded = get_job("gdelt-ts1")
    assert loaded is not None and loaded.created_at == T0 and loaded.created_at.tzinfo is not None
    assert type(loaded.created_at) is datetime and loaded.created_at.utcoffset() == timedelta(0)
    assert loaded.public() == j.public()  # the API's JSON is what it was


def test_event_markers_and_the_updated_job_carry_timestamps(fs: str) -> None:
    create_job(job("gdelt-ts2", T0))
    started = Event.make(EventType.started, EventData(job_id="gdelt-ts2", source="gdelt"), seq="1")
    after = record_event(started)
    assert after is not None and after.status.value == "running"
    stored = raw(f"{JOBS}/gdelt-ts2")
    marker = stored[EVENTS_FIELD][started.id]  # in the job document, which expires with it (below)
    assert isinstance(marker["time"], datetime) and marker["time"] == started.time
    assert isinstance(stored["started_at"], datetime)
    assert stored[EXPIRE_AT] == after.updated_at + timedelta(days=7)  # kept the retention after its last change
    done = Event.make(EventType.succeeded, EventData(job_id="gdelt-ts2", source="gdelt", watermark="w1"), seq="2")
    record_event(done)
    run = raw(f"{SOURCES}/gdelt/{RUNS}/gdelt-ts2")
    assert isinstance(run["finished_at"], datetime)
    assert source_state("gdelt").last_success_at == done.time
    assert source_states(["gdelt"])["gdelt"]["last_success_at"] == done.time.isoformat()  # as the API answered


def test_a_job_written_by_the_previous_version_still_loads_and_updates(fs: str) -> None:
    j = job("gdelt-old1", T0)
    old_version(j)
    assert isinstance(raw(f"{JOBS}/gdelt-old1")["created_at"], str)
    loaded = get_job("gdelt-old1")
    assert loaded is not None and loaded.created_at == T0 and loaded.public() == j.public()
    record_event(Event.make(EventType.started, EventData(job_id="gdelt-old1", source="gdelt"), seq="1"))
    assert isinstance(raw(f"{JOBS}/gdelt-old1")["created_at"], datetime)  # rewritten as a Timestamp


def test_newest_first_orders_timestamps_and_older_strings_by_time(fs: str) -> None:
    # Interleaved in time: old-version (string) and new (Timestamp) documents.
    for i, minutes in enumerate((0, 10, 20, 30, 40)):
        j = job(f"gdelt-mix{i}", T0 + timedelta(minutes=minutes))
        if i % 2:
            old_version(j)
        else:
            create_job(j)
    create_job(job("fred-mix9", T0 + timedelta(hours=1), source="fred"))
    assert [j.job_id for j in list_jobs(source="gdelt", limit=10)] == [f"gdelt-mix{i}" for i in (4, 3, 2, 1, 0)]
    assert [j.job_id for j in list_jobs(limit=3)] == ["fred-mix9", "gdelt-mix4", "gdelt-mix3"]


def test_firestore_orders_by_type_before_value(fs: str) -> None:
    """The quirk newest_first works around (docs/google-quirks.md): Timestamps sort before strings, so a
    plain descending order puts every string, however old, before every Timestamp."""
    create_job(job("gdelt-q-new", T0 + timedelta(days=30)))
    old_version(job("gdelt-q-old", T0))
    plain = db().collection(JOBS).order_by("created_at", direction="DESCENDING").limit(1).stream()
    assert [s.id for s in plain] == ["gdelt-q-old"]
    assert [j.job_id for j in list_jobs(limit=1)] == ["gdelt-q-new"]


def test_runs_of_both_versions_give_the_last_run(fs: str) -> None:
    runs = db().collection(SOURCES).document("fred").collection(RUNS)
    runs.document("a").set({"job_id": "a", "status": "succeeded", "finished_at": (T0 + timedelta(days=1)).isoformat()})
    runs.document("b").set({"job_id": "b", "status": "failed", "finished_at": T0 + timedelta(days=2)})
    runs.document("c").set({"job_id": "c", "status": "succeeded", "finished_at": T0})
    last = last_runs("fred")
    assert (last["last_job_id"], last["last_finished_at"]) == ("b", T0 + timedelta(days=2))
    assert last["last_success_at"] == T0 + timedelta(days=1)


def test_batches_and_dead_letters_store_timestamps(fs: str) -> None:
    b = Batch(batch_id="backfill-ts", kind="backfill", source="gdelt", total=2, created_at=T0)
    assert batches.create(b.batch_id, b.model_dump(mode="json")) is None
    assert raw("batches/backfill-ts")["created_at"] == T0
    stored = batches.get("backfill-ts")
    assert stored is not None and Batch.model_validate(stored).model_dump(mode="json") == b.model_dump(mode="json")
    deadletters.record("m-1", b"not json", "unreadable")
    assert isinstance(raw("dead_events/m-1")["received_at"], datetime)
    assert as_datetime(deadletters.stored(10)[0].received_at) is not None


def test_from_firestore_reads_nested_timestamps_as_plain_utc() -> None:
    from google.api_core.datetime_helpers import DatetimeWithNanoseconds

    value = DatetimeWithNanoseconds(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    out = from_firestore({"a": value, "b": {"c": [value]}, "d": "2026-01-02T03:04:05+00:00"})
    assert type(out["a"]) is datetime and out["a"] == value and type(out["b"]["c"][0]) is datetime
    assert out["d"] == "2026-01-02T03:04:05+00:00"
