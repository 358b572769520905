"""Read-only views for the operator console: a job's event markers and run record, recent batches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from common.core.ports import MAX_TIMELINE
from common.gcp.firestore.codec import EXPIRE_AT, as_datetime, from_firestore, newest_first
from common.gcp.firestore.markers import stored_markers
from common.gcp.firestore.query import bounded_call, db
from common.gcp.names import BATCHES, JOBS, RUNS, SOURCES

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def job_events(job_id: str) -> list[dict[str, Any]]:
    """The job's applied events, oldest first, each with its id: the markers in the job document, its parts'
    and those an earlier layout kept as documents of their own (``jobs/{id}/events``, until they expire)."""
    out = []
    for event_id, stored in stored_markers(db().collection(JOBS).document(job_id)).items():
        doc = from_firestore(stored)
        doc.pop(EXPIRE_AT, None)
        out.append({"id": event_id, **doc, "time": as_datetime(doc.get("time"))})
    return sorted(out, key=lambda e: (e["time"] or EPOCH, e["id"]))[:MAX_TIMELINE]


def job_run(source: str, job_id: str) -> dict[str, Any] | None:
    """The job's run record (``sources/{source}/runs/{job_id}``), written when its outcome was decided."""
    snap = db().collection(SOURCES).document(source).collection(RUNS).document(job_id).get(**bounded_call())
    return from_firestore(snap.to_dict()) if snap.exists else None


def recent_batches(limit: int) -> list[dict[str, Any]]:
    """The newest batches first (backfills and run-daily)."""
    snaps = newest_first(db().collection(BATCHES), "created_at", limit)
    return [dict(from_firestore(s.to_dict()), batch_id=s.id) for s in snaps]
