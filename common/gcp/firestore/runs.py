"""Operator actions on a job's run in Firestore: retry (a new run of the same job) and cancel (its run ends).

Each is one transaction on ``jobs/{id}`` that reads the job and refuses a job in the wrong state, so two
callers racing cannot both act: the second finds the state the first left.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from common.core.jobs import Job, apply_event, cancel_event, new_run
from common.core.ports import WrongState
from common.gcp.firestore.jobs import document, from_doc
from common.gcp.firestore.markers import LOAD_FIELD, LOADS_FIELD, job_fields, with_marker
from common.gcp.firestore.query import bounded_call, db
from common.gcp.firestore.sources import run_record, run_ref

__all__ = ["WrongState", "cancel_job", "retry_job"]


def _act(job_id: str, act: Callable[[Any, Any, Job, dict[str, Any]], Job]) -> Job | None:
    """Run ``act(transaction, ref, job, stored document)`` on the stored job in one transaction; None when the
    job is unknown."""
    from google.cloud import firestore as fs

    ref = document(job_id)

    @fs.transactional
    def txn(transaction: Any) -> Job | None:
        snap = ref.get(transaction=transaction, **bounded_call())
        if not snap.exists:
            return None
        data = snap.to_dict() or {}
        return act(transaction, ref, from_doc(data), data)

    result: Job | None = txn(db().transaction())
    return result


def retry_job(job_id: str, now: datetime) -> Job | None:
    """Start a new run of a failed or cancelled job (queued, its earlier runs in ``runs``); None when unknown.

    The caller enqueues the new run's first task (``TaskPayload.run``) after this returns.

    Raises:
        WrongState: the job is queued, running or succeeded.
    """

    def retry(transaction: Any, ref: Any, job: Job, _data: dict[str, Any]) -> Job:
        from google.cloud.firestore_v1 import DELETE_FIELD

        if not job.status.retryable:
            raise WrongState(job, "only a failed or cancelled job can be retried")
        new = new_run(job, now)
        # The earlier run's loads go (the new run loads its own outputs); its events' markers stay on the timeline.
        transaction.update(ref, {**job_fields(new), LOADS_FIELD: DELETE_FIELD, LOAD_FIELD: DELETE_FIELD})
        return new

    return _act(job_id, retry)


def cancel_job(job_id: str, now: datetime) -> Job | None:
    """End the current run of a queued or running job as ``cancelled`` (an event applied like any other, so
    events of the run arriving later never undo it); None when the job is unknown.

    The caller deletes the run's tasks still queued; a part already running finishes, and the next part
    checks the job before it starts (``common.runtime.ingest``).

    Raises:
        WrongState: the job is already succeeded, failed or cancelled.
    """

    def cancel(transaction: Any, ref: Any, job: Job, data: dict[str, Any]) -> Job:
        if job.status.terminal:
            raise WrongState(job, "only a queued or running job can be cancelled")
        event = cancel_event(job, now)
        new = apply_event(job, event) or job
        transaction.update(ref, with_marker(job_fields(new), data, event))
        transaction.set(run_ref(new), run_record(new, event))
        return new

    return _act(job_id, cancel)
