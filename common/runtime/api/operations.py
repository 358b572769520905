"""The API's operator actions: retry and cancel a job, and pause, resume or purge a source's queue.

Who may call them is who may call the rest of the API (``common.runtime.auth``): jobs have no owner, since
equal params are one job whoever submits them, so every authenticated caller acts on every job, as it can
already submit it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from common.core.jobs import Job, is_valid_id
from common.gcp import tasks
from common.gcp.firestore.runs import WrongState, cancel_job, retry_job
from common.runtime.api.models import ApiError, Response
from common.sources import all_sources, get_source

log = logging.getLogger("tributary.api")


def _unknown_job(job_id: str) -> ApiError:
    return ApiError(404, "job_not_found", f"no job {job_id!r}", field="job_id")


def enqueue_run(job: Job) -> None:
    """Enqueue the first task of the job's current run.

    Raises:
        ApiError: 503 when Cloud Tasks refused (the job stays queued; the reaper enqueues it again).
    """
    try:
        payload = tasks.TaskPayload(job_id=job.job_id, source=job.source, params=job.params, run=job.run)
        tasks.enqueue(payload, get_source(job.source))
    except Exception as exc:  # the job stays queued: the reaper enqueues it again within its period
        log.exception("enqueue of %s run %d failed", job.job_id, job.run)
        raise ApiError(
            503,
            "queue_unavailable",
            f"job {job.job_id} is queued for run {job.run} but its task could not be enqueued yet: {exc}; "
            "the reaper enqueues it again within 10 minutes",
        ) from exc


def rerun(job_id: str) -> Job | None:
    """Start a new run of a failed or cancelled job and enqueue it; None when the job is unknown.

    Raises:
        WrongState: the job is queued, running or succeeded.
        ApiError: 503 when the new run could not be enqueued.
    """
    if not is_valid_id(job_id):
        return None
    job = retry_job(job_id, datetime.now(UTC))
    if job is not None:
        log.info("job %s: run %d queued (a retry)", job_id, job.run)
        enqueue_run(job)
    return job


def retry(*, job_id: str, **_: Any) -> Response:
    """``POST /v1/jobs/{id}:retry``: run a failed or cancelled job again, as a new run of the same job."""
    try:
        job = rerun(job_id)
    except WrongState as exc:
        raise ApiError(409, "job_not_retryable", str(exc), field="job_id") from None
    if job is None:
        raise _unknown_job(job_id)
    return job.public(), 202, {"Location": f"/v1/jobs/{job.job_id}"}


def cancel(*, job_id: str, **_: Any) -> Response:
    """``POST /v1/jobs/{id}:cancel``: a queued job's tasks are deleted; a running job stops at its next part."""
    if not is_valid_id(job_id):
        raise _unknown_job(job_id)
    try:
        job = cancel_job(job_id, datetime.now(UTC))
    except WrongState as exc:
        raise ApiError(409, "job_not_cancellable", str(exc), field="job_id") from None
    if job is None:
        raise _unknown_job(job_id)
    try:
        deleted = tasks.delete_job_tasks(job_id, get_source(job.source))
        log.info("job %s: run %d cancelled, %d queued task(s) deleted", job_id, job.run, deleted)
    except Exception:  # the cancel stands: each part checks the job before it starts (common.runtime.ingest)
        log.warning("job %s: cancelled, but its queued tasks could not be deleted now", job_id, exc_info=True)
    return job.public(), 200, {}


def _source(name: str) -> str:
    try:
        return get_source(name).name
    except KeyError:
        names = ", ".join(s.name for s in all_sources())
        raise ApiError(404, "unknown_source", f"no source {name!r}; one of {names}", field="source") from None


def list_queues(**_: Any) -> Response:
    """``GET /v1/queues``: every source's queue and its state."""
    states = tasks.queue_states([s.name for s in all_sources()])
    return {"queues": [asdict(q) for q in states]}, 200, {}


def _queue_action(source: str, action: tasks.QueueAction) -> Response:
    name = _source(source)
    state = tasks.set_queue_state(name, action)
    if state is None:
        raise ApiError(404, "queue_not_found", f"source {name} has no queue yet (deploy.sh or `tributary dev up` "
                       "creates it)", field="source")  # fmt: skip
    log.info("queue of %s: %s (now %s)", name, action, state.state)
    return asdict(state), 200, {}


def pause_queue(*, source: str, **_: Any) -> Response:
    return _queue_action(source, "pause")


def resume_queue(*, source: str, **_: Any) -> Response:
    return _queue_action(source, "resume")


def purge_queue(*, source: str, **_: Any) -> Response:
    return _queue_action(source, "purge")
