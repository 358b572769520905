"""Batches: the jobs made by one trigger (a backfill range, run-daily), with progress counted, not stored.

A batch document (``batches/{batch_id}``) records what was asked and how many jobs it planned. Its
progress is four aggregation queries over ``jobs`` (``batch_id == id and status == s``), so no
document is written as children finish: nothing is hot, whatever the batch's size.

Child jobs have the ids a single submission of the same params would have, so re-submitting a range,
or overlapping ranges, never duplicates work: an existing job is reused, not re-run. A job belongs to
the batch that created it; a batch reports the jobs it reused separately (``reused``).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from common.core.batches import Batch, batch_id_for, overall, parse_bound
from common.core.jobs import Job, JobStatus, is_valid_id, job_id_for
from common.gcp.firestore import batches as batches_repo
from common.gcp.firestore import jobs as jobs_repo
from common.gcp.tasks import TaskPayload, enqueue_many
from common.runtime.context import source_context

if TYPE_CHECKING:  # pragma: no cover (a type only: the contract loads with a source's module, never at cold start)
    from common.sources.base import Source

__all__ = [
    "Batch",
    "batch_id_for",
    "child_jobs",
    "counts",
    "create_children",
    "create_jobs",
    "describe",
    "load",
    "overall",
    "parse_bound",
    "plan_backfill",
    "save",
]

log = logging.getLogger("tributary.batches")

#: Firestore round trips in flight while creating a batch's jobs.
CREATE_CONCURRENCY = 32
MAX_CHILDREN = 50_000


def create_children(batch: Batch, source: Source, children: list[dict[str, Any]], *, trigger: str) -> Batch:
    """Create every child job (concurrently) and enqueue those still queued (concurrently).

    Raises:
        common.core.errors.BadParams: a planned child's params are invalid (nothing is created).
    """
    return create_jobs(batch, source, child_jobs(batch, source, children, trigger=trigger))


def child_jobs(batch: Batch, source: Source, children: list[dict[str, Any]], *, trigger: str) -> list[Job]:
    """The batch's jobs for the planned children: validated, and distinct (two children of one job id are one
    job, so a batch's total is always its distinct jobs and it can end).

    Raises:
        common.core.errors.BadParams: a planned child's params are invalid.
    """
    now = datetime.now(UTC)
    jobs = []
    for raw in children:
        params = source.validate_params(raw, trusted=True)  # planned here (backfill, run-daily)
        job_id = job_id_for(source.name, source.dedup_params(params, now))
        stored = params.model_dump(mode="json", exclude_none=True)
        jobs.append(Job(job_id=job_id, source=source.name, params=stored, trigger=trigger, batch_id=batch.batch_id))
    return list({j.job_id: j for j in jobs}.values())


def create_jobs(batch: Batch, source: Source, unique: list[Job]) -> Batch:
    """Create the distinct jobs of :func:`child_jobs` (concurrently) and enqueue those still queued.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Firestore or Cloud Tasks refused (the jobs created stay
            ``queued``; submitting the batch again enqueues them).
    """
    with ThreadPoolExecutor(max_workers=CREATE_CONCURRENCY, thread_name_prefix="create-job") as pool:
        results = list(pool.map(jobs_repo.create_job, unique))
    batch.total = len(unique)
    batch.created = sum(1 for _, new in results if new)
    batch.reused_ids = [job.job_id for job, new in results if not new and job.batch_id != batch.batch_id]
    batch.reused = len(batch.reused_ids)
    batch.job_ids = [job.job_id for job, _ in results]
    queued = [
        TaskPayload(job_id=j.job_id, source=j.source, params=j.params)
        for j, _ in results
        if j.status is JobStatus.queued
    ]
    created, duplicates = enqueue_many(queued, source)
    log.info(
        "batch %s: %d jobs (%d new, %d reused); %d tasks enqueued, %d already queued",
        batch.batch_id,
        batch.total,
        batch.created,
        batch.reused,
        created,
        duplicates,
    )
    return batch


def save(batch: Batch) -> Batch:
    """Write the batch document unless it exists; returns the stored batch."""
    stored = batches_repo.create(batch.batch_id, batch.model_dump(mode="json"))
    if stored is None:
        return batch
    existing = Batch.model_validate(stored)
    if batch.total > existing.total:  # a resubmission that planned more (e.g. new slots published since)
        batches_repo.put(batch.batch_id, batch.model_dump(mode="json"))
        return batch
    return existing


def load(batch_id: str) -> Batch | None:
    if not is_valid_id(batch_id):
        return None
    stored = batches_repo.get(batch_id)
    return Batch.model_validate(stored) if stored is not None else None


def counts(batch_id: str, reused_ids: list[str] | None = None) -> dict[str, int]:
    """Jobs of the batch by status: its own by aggregation queries (nothing read document by document),
    plus the jobs it reused from earlier triggers, read in one batched call."""
    out = {status.value: jobs_repo.count_by({"batch_id": batch_id, "status": status.value}) for status in JobStatus}
    for value in jobs_repo.statuses(reused_ids) if reused_ids else ():
        if value in out:
            out[value] += 1
    return out


def describe(batch: Batch) -> dict[str, Any]:
    c = counts(batch.batch_id, batch.reused_ids)
    return {
        **batch.model_dump(mode="json", exclude={"reused_ids"}),
        "status": overall(c, batch.total),
        "counts": c,
        "done": c["succeeded"] + c["failed"] + c["cancelled"],
    }


def plan_backfill(source: Source, start: datetime, end: datetime, raw_params: dict[str, Any]) -> list[dict[str, Any]]:
    """The child params of a backfill, planned by the source (GDELT reads its master list once).

    Raises:
        common.core.errors.IngestError: planning failed (bad params, upstream error).
    """
    raw = dict(raw_params)
    fields = source.params_model.model_fields
    if "start" in fields and "end" in fields:
        raw.update(start=start.date().isoformat(), end=(end - timedelta(days=1)).date().isoformat())
    params = source.validate_params(raw)
    with source_context(source) as ctx:
        return source.backfill(start, end, params, ctx)
