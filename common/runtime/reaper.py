"""The reaper: no job is orphaned. Run every 10 minutes by the ``tributary-reaper`` schedule.

- A job ``running`` whose last sign of life is older than its source's dispatch deadline (plus a grace)
  and that has **no task left in its queue** will never hear from an attempt again (the last attempt
  died without reporting: a killed instance, a timeout on the final attempt). It is failed with a
  reason that says so.
- A job still ``queued`` long after it was created is enqueued again: its first enqueue may have
  failed after the job was written. The task name makes this a no-op when the task exists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from common.core.events import Event, EventData, EventType
from common.core.jobs import Job, JobStatus
from common.gcp.firestore import jobs as jobs_repo
from common.gcp.tasks import TaskPayload, enqueue, has_task, task_names
from common.sources import get_source

log = logging.getLogger("tributary.reaper")

#: Extra time past the dispatch deadline before a silent job counts as stuck.
GRACE = timedelta(minutes=2)
#: How long a job may stay queued before the reaper enqueues it again.
QUEUED_TOO_LONG = timedelta(minutes=10)
#: Jobs examined per status in one run (the next run takes the rest).
BATCH = 500


@dataclass
class Reaped:
    job_id: str
    action: str  # "failed" | "re-enqueued" | "kept"
    reason: str


def _last_activity(job: Job) -> datetime:
    times = [t for t in (job.updated_at, job.started_at, job.created_at) if t]
    return max([*times, *jobs_repo.part_update_times(job.job_id)])


def reap(*, now: datetime | None = None, dry_run: bool = False) -> list[Reaped]:
    """Fail stuck running jobs, re-enqueue stale queued ones; returns what was done (or would be)."""
    now = now or datetime.now(UTC)
    out: list[Reaped] = []
    queued: dict[str, list[str]] = {}  # source -> task names, listed on first need
    for job in jobs_repo.list_jobs(status=JobStatus.running.value, limit=BATCH):
        source = get_source(job.source)
        limit = timedelta(seconds=source.queue.dispatch_deadline) + GRACE
        idle = now - _last_activity(job)
        if idle <= limit:
            continue
        if source.name not in queued:
            queued[source.name] = task_names(source)
        if has_task(job.job_id, source, queued[source.name]):
            out.append(Reaped(job.job_id, "kept", f"idle {idle.total_seconds():.0f} s but its task is still queued"))
            continue
        reason = (
            f"no progress for {idle.total_seconds():.0f} s (the {source.name} limit is {limit.total_seconds():.0f} s) "
            "and no attempt is left in the queue: the last attempt stopped without reporting. "
            f"Retry it with `tributary jobs retry {job.job_id}` (no new Idempotency-Key is needed)."
        )
        out.append(Reaped(job.job_id, "failed", reason))
        if not dry_run:
            data = EventData(
                job_id=job.job_id,
                source=job.source,
                attempt=job.attempt,
                run=job.run,
                error={"kind": "permanent", "type": "Reaped", "message": reason},
            )
            jobs_repo.record_event(Event.make(EventType.failed, data, seq="reaper").model_copy(update={"time": now}))
    for job in jobs_repo.list_jobs(status=JobStatus.queued.value, limit=BATCH):
        queued_at = job.created_at if job.run == 1 else job.updated_at  # a retry's run was queued at the retry
        if now - queued_at <= QUEUED_TOO_LONG:
            continue
        source = get_source(job.source)
        payload = TaskPayload(job_id=job.job_id, source=job.source, params=job.params, run=job.run)
        created = False if dry_run else enqueue(payload, source)
        if created or dry_run:
            out.append(Reaped(job.job_id, "re-enqueued", "queued for too long"))
        else:
            out.append(Reaped(job.job_id, "kept", "queued for too long, but its task is still in the queue"))
    for r in out:
        log.info("reaper: %s %s: %s", r.action, r.job_id, r.reason)
    return out
