"""The job document's layout on the emulator: markers kept in the job (bounded), a part's in its part, load reports
summed on read, and what the earlier layout wrote (marker documents, a stored ``load``) still read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.core.events import Event, EventData, EventType, PartProgress
from common.core.jobs import Job, apply_event
from common.gcp.firestore import create_job, get_job, jobs, loads, markers, reads, record_event, runs
from common.gcp.firestore.query import db
from common.gcp.names import EVENTS, JOBS, LOADS

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)


def event(etype: EventType, job_id: str, *, seq: str = "0", minutes: int = 0, **data) -> Event:
    e = Event.make(etype, EventData(job_id=job_id, source="gdelt", **data), seq=seq)
    return e.model_copy(update={"time": T0 + timedelta(minutes=minutes)})


def test_the_markers_in_a_job_are_bounded_keeping_the_newest(gcp: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(markers, "MAX_TIMELINE", 3)
    create_job(Job(job_id="gdelt-m1", source="gdelt"))
    for i in range(5):
        record_event(
            event(EventType.retrying, "gdelt-m1", seq=str(i), minutes=i, error={"kind": "transient", "message": "x"})
        )
    stored = db().collection(JOBS).document("gdelt-m1").get().to_dict()
    assert sorted(stored[markers.EVENTS_FIELD]) == [f"gdelt-m1.1.retrying.{i}" for i in (2, 3, 4)]


def test_a_part_s_marker_is_its_part_document_and_a_redelivered_part_writes_nothing(gcp: str) -> None:
    create_job(Job(job_id="gdelt-m2", source="gdelt"))
    record_event(event(EventType.started, "gdelt-m2", progress=PartProgress(done=0, total=2)))
    part = event(
        EventType.progress, "gdelt-m2", seq="a", minutes=1, part="a", records=1, progress=PartProgress(done=1, total=2)
    )
    record_event(part)
    ref = db().collection(JOBS).document("gdelt-m2").collection("parts").document("a")
    first = ref.get()
    record_event(part)  # redelivered
    assert ref.get().update_time == first.update_time
    assert [e["type"] for e in reads.job_events("gdelt-m2")] == ["started", "progress"]
    record_event(
        event(
            EventType.progress,
            "gdelt-m2",
            seq="b",
            minutes=2,
            part="b",
            records=2,
            progress=PartProgress(done=1, total=2),
        )
    )
    job = get_job("gdelt-m2")
    assert job is not None and (job.status, job.records) == ("succeeded", 3)


def test_load_reports_are_summed_on_read_and_a_retry_clears_them(gcp: str) -> None:
    create_job(Job(job_id="gdelt-m3", source="gdelt"))
    loads.record_load(
        "gdelt-m3", "a", {"status": "loaded", "warehouse": "duckdb", "rows": 2, "bytes": 10, "tables": []}
    )
    loads.record_load(
        "gdelt-m3", "b", {"status": "failed", "warehouse": "duckdb", "rows": 0, "error": "no", "tables": []}
    )
    record_event(event(EventType.failed, "gdelt-m3", error={"kind": "permanent", "message": "x"}))
    job = get_job("gdelt-m3")
    assert job is not None and job.load == {
        "status": "failed", "warehouse": "duckdb", "rows": 2, "bytes": 10, "tables": [], "error": "no"
    }  # fmt: skip
    retried = runs.retry_job("gdelt-m3", T0 + timedelta(hours=1))
    assert retried is not None and retried.load is None
    after = get_job("gdelt-m3")
    assert after is not None and after.load is None and len(reads.job_events("gdelt-m3")) == 1


def test_what_the_earlier_layout_wrote_is_still_read(gcp: str) -> None:
    ref = db().collection(JOBS).document("gdelt-m4")
    started = event(EventType.started, "gdelt-m4")
    # As the earlier layout left a job: the marker a document of its own, the loads' sum in ``load``.
    applied = apply_event(Job(job_id="gdelt-m4", source="gdelt", created_at=T0, updated_at=T0), started)
    assert applied is not None
    ref.set(jobs.to_doc(applied.model_copy(update={"load": {"status": "loaded", "rows": 5}})))
    ref.collection(EVENTS).document(started.id).set(markers.legacy_marker(started))
    ref.collection(LOADS).document("job").set({"status": "loaded", "rows": 5})
    job = get_job("gdelt-m4")
    assert job is not None and job.load == {"status": "loaded", "rows": 5}
    assert [e["id"] for e in reads.job_events("gdelt-m4")] == [started.id]
    record_event(started)  # redelivered after the change: applied again, which changes nothing but its marker
    again = get_job("gdelt-m4")
    assert again is not None and again.model_dump() == job.model_dump()
    assert [e["id"] for e in reads.job_events("gdelt-m4")] == [started.id]
