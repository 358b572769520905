"""Job and source state in Firestore.

Documents: ``jobs/{job_id}``, ``jobs/{id}/events/{event_id}`` (markers), ``jobs/{id}/parts/{key}``,
``sources/{name}`` (watermark, cursors) and ``sources/{name}/runs/{job_id}`` (one per finished job).

Each event is applied in one transaction that also writes an event marker, so a redelivered event is
applied once. Parts of a job write their own documents and the job is finished by counting them, so no
document is hot while parts run in parallel.

Every call passes ``common.gcp.clients.bounded_call()``: the client's defaults retry an unreachable Firestore
for up to 300 s (docs/google-quirks.md), so ``GET /v1/jobs/{id}`` hung for minutes instead of answering 503.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from common.core.events import Event, EventType
from common.core.jobs import Job, JobStatus, Progress, apply_event, is_valid_id
from common.gcp.clients import bounded_call, firestore
from common.sources.base import SourceState

JOBS, SOURCES, EVENTS, PARTS, RUNS = "jobs", "sources", "events", "parts", "runs"


def _job_ref(job_id: str) -> Any:
    return firestore().collection(JOBS).document(job_id)


def _load(data: dict[str, Any]) -> Job:
    return Job.model_validate(data)


def create_job(job: Job) -> tuple[Job, bool]:
    """Write ``job`` unless a job with its id exists. Returns the stored job and whether it is new."""
    from google.api_core.exceptions import AlreadyExists, Conflict

    ref = _job_ref(job.job_id)
    try:
        ref.create(job.model_dump(mode="json"), **bounded_call())
        return job, True
    except (AlreadyExists, Conflict):
        snap = ref.get(**bounded_call())
        return _load(snap.to_dict()), False


def get_job(job_id: str, *, with_progress: bool = True) -> Job | None:
    """The job, with ``progress.done`` counted from its parts while it runs; None when unknown."""
    if not is_valid_id(job_id):
        return None
    snap = _job_ref(job_id).get(**bounded_call())
    if not snap.exists:
        return None
    job = _load(snap.to_dict())
    if with_progress and job.progress and job.progress.total > 1 and not job.status.terminal:
        job.progress = Progress(done=count_parts(job_id), total=job.progress.total)
    return job


def list_jobs(
    *, source: str | None = None, status: str | None = None, batch_id: str | None = None, limit: int = 50
) -> list[Job]:
    """The newest jobs first, filtered by source, status and batch."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    query: Any = firestore().collection(JOBS)
    for name, value in (("source", source), ("status", status), ("batch_id", batch_id)):
        if value is not None:
            query = query.where(filter=FieldFilter(name, "==", value))
    query = query.order_by("created_at", direction="DESCENDING").limit(limit)
    return [_load(s.to_dict()) for s in query.stream(**bounded_call())]


def count_parts(job_id: str) -> int:
    """How many parts of the job have stored their result (an aggregation query, not a counter)."""
    result: Any = _job_ref(job_id).collection(PARTS).count().get(**bounded_call())
    return int(result[0][0].value)


def record_event(event: Event) -> Job | None:
    """Apply ``event`` once, in one transaction. Returns the job as it now is (None when unknown and ignored).

    A duplicate event (its marker exists) changes nothing. A part's progress event stores the part's
    result; when every part has reported, the job is finished by :func:`finish_if_complete`.
    """
    from google.cloud import firestore as fs

    client = firestore()
    job_ref = _job_ref(event.data.job_id)
    marker_ref = job_ref.collection(EVENTS).document(event.id)

    @fs.transactional
    def txn(transaction: Any) -> tuple[Job, bool]:
        # Both documents in one read (one round trip, not two).
        read = transaction.get_all([job_ref, marker_ref], **bounded_call())
        snaps = {snap.reference.path: snap for snap in read}
        job_snap, marker = snaps[job_ref.path], snaps[marker_ref.path]
        job = (
            _load(job_snap.to_dict())
            if job_snap.exists
            else Job(job_id=event.data.job_id, source=event.data.source, created_at=event.time)
        )
        if marker.exists:
            return job, False
        transaction.set(marker_ref, {"type": event.type.value, "time": event.time.isoformat()})
        if event.type is EventType.progress and event.data.part:
            transaction.set(job_ref.collection(PARTS).document(event.data.part), event.data.model_dump(mode="json"))
            if job.status is JobStatus.running and job.progress and job.progress.total > 1:
                # A running multi-part job is finished by counting its parts: writing the job document for
                # every part would make it the hot document of the job (contention, aborted transactions).
                return job, False
        new = apply_event(job, event)
        if new is not None:
            transaction.set(job_ref, new.model_dump(mode="json"))
            if new.status.terminal and not job.status.terminal:
                # The job's own run record, with the job (no other job writes it, so it adds no contention).
                transaction.set(_run_ref(new), run_record(new, event))
        return (new or job), new is not None

    job, _changed = txn(client.transaction())
    if job.status.terminal and job.status.value == event.type.value:
        # Outside the job's transaction, so that the source's one document is not read by every event
        # of every job (it was the hot document: lock timeouts under load). Monotonic and idempotent, so a
        # redelivered terminal event (its marker already written) simply applies it again.
        update_source(job, event)
    # Count the parts after a part lands, and after "started" too: Pub/Sub may deliver every part's
    # event before the one that says how many parts there are.
    if event.type in (EventType.started, EventType.progress) and job.progress and job.progress.total > 1:
        return finish_if_complete(job.job_id) or job
    return job


def finish_if_complete(job_id: str) -> Job | None:
    """Mark a multi-part job succeeded once all its parts are stored; idempotent."""
    from google.cloud import firestore as fs

    client = firestore()
    job_ref = _job_ref(job_id)
    snap = job_ref.get(**bounded_call())
    if not snap.exists:
        return None
    job = _load(snap.to_dict())
    if job.status.terminal or not job.progress or count_parts(job_id) < job.progress.total:
        return job

    @fs.transactional
    def txn(transaction: Any) -> Job:
        current = _load(job_ref.get(transaction=transaction, **bounded_call()).to_dict())
        if current.status.terminal:
            return current
        parts = [p.to_dict() for p in job_ref.collection(PARTS).stream(transaction=transaction, **bounded_call())]
        from common.core.events import EventData

        watermarks = [p["watermark"] for p in parts if p.get("watermark")]
        cursors: dict[str, str] = {}
        for p in parts:
            for key, value in (p.get("cursors") or {}).items():
                cursors[key] = max(value, cursors.get(key, value))
        done = Event.make(
            EventType.succeeded,
            EventData(
                job_id=job_id,
                source=current.source,
                attempt=max((p.get("attempt", 1) for p in parts), default=1),
                records=sum(p.get("records", 0) for p in parts),
                bytes=sum(p.get("bytes", 0) for p in parts),
                outputs=sorted({o for p in parts for o in p.get("outputs", [])}),
                watermark=max(watermarks) if watermarks else None,
                cursors=cursors,
            ),
            seq="parts",
        )
        new = apply_event(current, done)
        if new is None:
            return current
        transaction.set(job_ref, new.model_dump(mode="json"))
        transaction.set(_run_ref(new), run_record(new, done))
        finished_by.append(done)
        return new

    finished_by: list[Event] = []
    finished: Job = txn(client.transaction())
    if finished_by:
        update_source(finished, finished_by[-1])
    return finished


def _run_ref(job: Job) -> Any:
    return firestore().collection(SOURCES).document(job.source).collection(RUNS).document(job.job_id)


def run_record(job: Job, event: Event) -> dict[str, Any]:
    """``sources/{name}/runs/{job_id}``: what a terminal job leaves on its source."""
    return {
        "job_id": job.job_id,
        "status": job.status.value,
        "finished_at": event.time.isoformat(),
        "watermark": event.data.watermark,
        "error": job.error.model_dump() if job.error else None,
    }


def update_source(job: Job, event: Event) -> None:
    """Move a source's position forward after a terminal job, without a document that every job writes.

    The job's own record, ``sources/{name}/runs/{job_id}`` (:func:`run_record`), is written in the
    transaction that finishes it; the last status and the last success are read back from these by query
    (:func:`source_states`). Here, ``sources/{name}``: the watermark and cursors, in a transaction, and only
    when this job moves one of them forward, which a cheap read tells first: most jobs (and every failed
    one) never touch it. A job that reports neither a watermark nor a cursor skips the read too.
    """
    from google.cloud import firestore as fs

    ref = firestore().collection(SOURCES).document(job.source)
    if job.status is not JobStatus.succeeded or not (event.data.watermark or event.data.cursors):
        return
    if not _advances(ref.get(**bounded_call()), event):
        return

    @fs.transactional
    def txn(transaction: Any) -> None:
        snap = ref.get(transaction=transaction, **bounded_call())
        state = (snap.to_dict() or {}) if snap.exists else {}
        update: dict[str, Any] = {"name": job.source}
        if event.data.watermark and event.data.watermark > (state.get("watermark") or ""):
            update["watermark"] = event.data.watermark
        known = state.get("cursors") or {}
        advanced = {k: v for k, v in event.data.cursors.items() if v > known.get(k, "")}
        if advanced:
            update["cursors"] = {**known, **advanced}
        transaction.set(ref, update, merge=True)

    txn(firestore().transaction())


def _advances(snap: Any, event: Event) -> bool:
    """Whether the event's watermark or a cursor is past what the source has (compared as strings)."""
    state = (snap.to_dict() or {}) if snap.exists else {}
    known = state.get("cursors") or {}
    if event.data.watermark and event.data.watermark > (state.get("watermark") or ""):
        return True
    return any(v > known.get(k, "") for k, v in event.data.cursors.items())


def _last_runs(name: str) -> dict[str, Any]:
    """The last run and the last successful run of a source (two single-document queries)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    runs = firestore().collection(SOURCES).document(name).collection(RUNS)
    newest = list(runs.order_by("finished_at", direction="DESCENDING").limit(1).stream(**bounded_call()))
    out: dict[str, Any] = {}
    if newest:
        last = newest[0].to_dict() or {}
        out.update(
            last_status=last.get("status"),
            last_finished_at=last.get("finished_at"),
            last_job_id=last.get("job_id"),
            last_error=last.get("error"),
        )
    succeeded = runs.where(filter=FieldFilter("status", "==", "succeeded"))
    best = list(succeeded.order_by("finished_at", direction="DESCENDING").limit(1).stream(**bounded_call()))
    if best:
        out["last_success_at"] = (best[0].to_dict() or {}).get("finished_at")
    return out


def source_state(name: str) -> SourceState:
    """What is known of a source, for incremental planning."""
    snap = firestore().collection(SOURCES).document(name).get(**bounded_call())
    data: dict[str, Any] = {**((snap.to_dict() or {}) if snap.exists else {}), **_last_runs(name)}
    last = data.get("last_success_at")
    return SourceState(
        watermark=data.get("watermark"),
        last_success_at=datetime.fromisoformat(last) if last else None,
        last_status=data.get("last_status"),
        cursors=dict(data.get("cursors") or {}),
    )


def source_states(names: list[str]) -> dict[str, dict[str, Any]]:
    """Watermark, cursors, last status and last success of each named source."""
    client = firestore()
    refs = [client.collection(SOURCES).document(n) for n in names]
    positions = {snap.id: (snap.to_dict() or {}) for snap in client.get_all(refs, **bounded_call()) if snap.exists}
    return {n: {**positions.get(n, {}), **_last_runs(n)} for n in names}


def now() -> datetime:
    return datetime.now(UTC)
