"""Source state in Firestore: ``sources/{name}`` (watermark, cursors) and ``sources/{name}/runs/{job_id}``
(one per finished job), read back for incremental planning and ``GET /v1/sources``."""

from __future__ import annotations

from typing import Any

from common.core.events import Event
from common.core.jobs import Job, JobStatus
from common.core.source_state import SourceState
from common.gcp.firestore.codec import as_datetime, as_text, from_firestore, newest_first, timestamp
from common.gcp.firestore.query import bounded_call, db
from common.gcp.names import RUNS, SOURCES


def source_ref(name: str) -> Any:
    """``sources/{name}``."""
    return db().collection(SOURCES).document(name)


def run_ref(job: Job) -> Any:
    """``sources/{name}/runs/{job_id}``."""
    return source_ref(job.source).collection(RUNS).document(job.job_id)


def run_record(job: Job, event: Event) -> dict[str, Any]:
    """``sources/{name}/runs/{job_id}``: what a terminal job leaves on its source."""
    return {
        "job_id": job.job_id,
        "status": job.status.value,
        "finished_at": timestamp(event.time),
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

    ref = source_ref(job.source)
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

    txn(db().transaction())


def _advances(snap: Any, event: Event) -> bool:
    """Whether the event's watermark or a cursor is past what the source has (compared as strings)."""
    state = (snap.to_dict() or {}) if snap.exists else {}
    known = state.get("cursors") or {}
    if event.data.watermark and event.data.watermark > (state.get("watermark") or ""):
        return True
    return any(v > known.get(k, "") for k, v in event.data.cursors.items())


def last_runs(name: str) -> dict[str, Any]:
    """The last run and the last successful run of a source (single-document queries, one per stored type
    of ``finished_at``: see ``codec.newest_first``); times as aware UTC datetimes."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    runs = source_ref(name).collection(RUNS)
    newest = newest_first(runs, "finished_at", 1)
    out: dict[str, Any] = {}
    if newest:
        last = from_firestore(newest[0].to_dict())
        out.update(
            last_status=last.get("status"),
            last_finished_at=as_datetime(last.get("finished_at")),
            last_job_id=last.get("job_id"),
            last_error=last.get("error"),
        )
    succeeded = runs.where(filter=FieldFilter("status", "==", "succeeded"))
    best = newest_first(succeeded, "finished_at", 1)
    if best:
        out["last_success_at"] = as_datetime((best[0].to_dict() or {}).get("finished_at"))
    return out


def source_state(name: str) -> SourceState:
    """What is known of a source, for incremental planning."""
    snap = source_ref(name).get(**bounded_call())
    data: dict[str, Any] = {**((snap.to_dict() or {}) if snap.exists else {}), **last_runs(name)}
    return SourceState(
        watermark=data.get("watermark"),
        last_success_at=data.get("last_success_at"),
        last_status=data.get("last_status"),
        cursors=dict(data.get("cursors") or {}),
    )


def source_states(names: list[str]) -> dict[str, dict[str, Any]]:
    """Watermark, cursors, last status and last success of each named source, times in the text form the API
    has always answered (:func:`codec.as_text`)."""
    client = db()
    refs = [source_ref(n) for n in names]
    positions = {snap.id: (snap.to_dict() or {}) for snap in client.get_all(refs, **bounded_call()) if snap.exists}
    out = {}
    for n in names:
        runs = {k: as_text(v) if k.endswith("_at") else v for k, v in last_runs(n).items()}
        out[n] = {**positions.get(n, {}), **runs}
    return out
