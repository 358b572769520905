"""Jobs in Firestore: ``jobs/{id}``, holding its applied events' markers (``events``, :mod:`.markers`), and its
parts (``…/parts/{key}``).

Each event is applied in one transaction that reads the job and writes it with the event's marker (one read, one
write), so a redelivered event is applied once. Parts of a job write their own documents, each carrying the
markers of the events that reported it, and the job is finished by counting them, so no document is hot while
parts run in parallel.

Every call passes ``common.gcp.clients.bounded_call()``: the client's defaults retry an unreachable Firestore
for up to 300 s (docs/google-quirks.md), so ``GET /v1/jobs/{id}`` hung for minutes instead of answering 503.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from common.core.events import Event, EventType
from common.core.jobs import (
    Job,
    JobStatus,
    Progress,
    apply_event,
    awaits_parts,
    is_valid_id,
    outcome_key,
    parts_succeeded,
)
from common.gcp.firestore.codec import newest_first, to_firestore
from common.gcp.firestore.markers import applied, job_fields, job_of, part_applied, part_doc, with_marker
from common.gcp.firestore.query import bounded_call, count, db
from common.gcp.firestore.sources import run_record, run_ref, update_source
from common.gcp.names import JOBS, PARTS


def document(job_id: str) -> Any:
    """``jobs/{job_id}``."""
    return db().collection(JOBS).document(job_id)


def from_doc(data: dict[str, Any]) -> Job:
    """The job in a stored ``jobs/{id}`` (:func:`.markers.job_of`)."""
    return job_of(data)


def to_doc(job: Job) -> dict[str, Any]:
    """``jobs/{id}`` as created: times as Timestamps, expiring the retention after its last change."""
    return to_firestore(job, expires_from=job.updated_at)


def create_job(job: Job) -> tuple[Job, bool]:
    """Write ``job`` unless a job with its id exists. Returns the stored job and whether it is new."""
    from google.api_core.exceptions import AlreadyExists, Conflict

    doc = document(job.job_id)
    try:
        doc.create(to_doc(job), **bounded_call())
        return job, True
    except (AlreadyExists, Conflict):
        snap = doc.get(**bounded_call())
        return from_doc(snap.to_dict()), False


def get_job(job_id: str, *, with_progress: bool = True) -> Job | None:
    """The job, with ``progress.done`` counted from its parts while it runs; None when unknown."""
    if not is_valid_id(job_id):
        return None
    snap = document(job_id).get(**bounded_call())
    if not snap.exists:
        return None
    job = from_doc(snap.to_dict())
    if with_progress and job.progress and job.progress.total > 1 and not job.status.terminal:
        job.progress = Progress(done=count_parts(job_id, job.run), total=job.progress.total)
    return job


def list_jobs(
    *, source: str | None = None, status: str | None = None, batch_id: str | None = None, limit: int = 50
) -> list[Job]:
    """The newest jobs first, filtered by source, status and batch."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    query: Any = db().collection(JOBS)
    for name, value in (("source", source), ("status", status), ("batch_id", batch_id)):
        if value is not None:
            query = query.where(filter=FieldFilter(name, "==", value))
    return [from_doc(s.to_dict()) for s in newest_first(query, "created_at", limit)]


def _parts(job_id: str, run: int) -> Any:
    """The job's stored parts of ``run``. A retry's parts overwrite the same documents (``parts/{key}``), so
    from run 2 on only those that carry the run are its own (run 1's never carried one: they are all run 1's)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    parts = document(job_id).collection(PARTS)
    return parts if run <= 1 else parts.where(filter=FieldFilter("run", "==", run))


def count_parts(job_id: str, run: int = 1) -> int:
    """How many parts of the job's ``run`` have stored their result (an aggregation query, not a counter)."""
    return count(_parts(job_id, run))


def part_update_times(job_id: str) -> list[datetime]:
    """When each stored part of the job was last written (the reaper's signs of life)."""
    parts = document(job_id).collection(PARTS).stream(**bounded_call())
    return [part.update_time for part in parts if part.update_time]


def record_event(event: Event) -> Job | None:
    """Apply ``event`` once, in one transaction: the job read, the job written with the event's marker (or, for
    a part of a running multi-part job, the part's document). Returns the job as it now is, or None for an event
    of a job that was never created (or of another source): nothing is written for it.

    A duplicate event (its marker is in the job) changes nothing. A part's progress event stores the part's
    result; when every part has reported, the job is finished by :func:`finish_if_complete`.
    """
    from google.cloud import firestore as fs

    client = db()
    job_ref = document(event.data.job_id)
    part_ref = job_ref.collection(PARTS).document(event.data.part) if event.data.part else None

    @fs.transactional
    def txn(transaction: Any) -> tuple[Job | None, bool]:
        # A part's event reads its part's document too (its marker), in the same call: one round trip.
        read = transaction.get_all([job_ref, *([part_ref] if part_ref else [])], **bounded_call())
        snaps = {snap.reference.path: snap for snap in read}
        job_snap = snaps[job_ref.path]
        if not job_snap.exists:
            # Every job is created (api, batch) before its task runs: an event for another id names a job we
            # never made. Writing nothing keeps a forged or stray event from creating a phantom job.
            return None, False
        data = job_snap.to_dict() or {}
        job = from_doc(data)
        if job.source != event.data.source:
            return None, False  # an event of another source's job id: as foreign as an unknown id
        part = (snaps[part_ref.path].to_dict() or {}) if part_ref and snaps[part_ref.path].exists else {}
        if applied(data, event) or part_applied(part, event) or event.data.run != job.run:
            # A duplicate; or an event of another run (a late one of the run a retry replaced): nothing to do,
            # and no marker, so that it is never mistaken for one of the current run.
            return job, False
        if event.type is EventType.progress and part_ref is not None:
            transaction.set(part_ref, part_doc(part, event))
            if job.status is JobStatus.running and job.progress and job.progress.total > 1:
                # A running multi-part job is finished by counting its parts: writing the job document for
                # every part would make it the hot document of the job (contention, aborted transactions).
                return job, False
        new = apply_event(job, event)
        # The marker is written even when the event changes nothing else, so that a redelivery finds it.
        transaction.update(job_ref, with_marker(job_fields(new or job), data, event))
        if new is not None and new.status.terminal and new.decided_by != job.decided_by:
            # The job's own run record, with the job (no other job writes it, so it adds no contention);
            # rewritten when a later event decides the outcome (a success beating a failure).
            transaction.set(run_ref(new), run_record(new, event))
        return (new or job), new is not None

    job, _changed = txn(client.transaction())
    if job is None:
        return None
    if event.data.run != job.run:
        return job
    if job.status.terminal and job.decided_by == outcome_key(event):
        # Only the event that decided the outcome moves the source. Outside the job's transaction, so that the
        # source's one document is not read by every event of every job (it was the hot document: lock timeouts
        # under load). Monotonic and idempotent, so a redelivered terminal event (its marker already written)
        # simply applies it again.
        update_source(job, event)
    # Count the parts after a part lands, and after "started" too: Pub/Sub may deliver every part's
    # event before the one that says how many parts there are.
    if event.type in (EventType.started, EventType.progress) and job.progress and job.progress.total > 1:
        return finish_if_complete(job.job_id) or job
    return job


def finish_if_complete(job_id: str) -> Job | None:
    """Mark a multi-part job succeeded once all its parts are stored, even one a part's failure had failed
    (a success beats a failure, whichever arrived first); idempotent."""
    from google.cloud import firestore as fs

    client = db()
    job_ref = document(job_id)
    snap = job_ref.get(**bounded_call())
    if not snap.exists:
        return None
    job = from_doc(snap.to_dict())
    if not awaits_parts(job) or job.progress is None or count_parts(job_id, job.run) < job.progress.total:
        return job

    @fs.transactional
    def txn(transaction: Any) -> Job:
        current = from_doc(job_ref.get(transaction=transaction, **bounded_call()).to_dict())
        if not awaits_parts(current) or current.run != job.run:
            return current
        parts = [p.to_dict() for p in _parts(job_id, current.run).stream(transaction=transaction, **bounded_call())]
        done = parts_succeeded(current, parts)
        new = apply_event(current, done)
        if new is None:
            return current
        transaction.update(job_ref, job_fields(new))
        transaction.set(run_ref(new), run_record(new, done))
        finished_by.append(done)
        return new

    finished_by: list[Event] = []
    finished: Job = txn(client.transaction())
    if finished_by:
        update_source(finished, finished_by[-1])
    return finished


def count_by(filters: dict[str, str]) -> int:
    """How many jobs match every ``field == value`` in ``filters`` (one aggregation query)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    query: Any = db().collection(JOBS)
    for name, value in filters.items():
        query = query.where(filter=FieldFilter(name, "==", value))
    return count(query)


def statuses(job_ids: list[str]) -> list[str | None]:
    """The status of each job (None for an unknown one), read in one batched call of that field only."""
    refs = [document(job_id) for job_id in job_ids]
    out = []
    for snap in db().get_all(refs, field_paths=["status"], **bounded_call()):
        out.append((snap.to_dict() or {}).get("status") if snap.exists else None)
    return out
