"""Cloud Tasks adapter: one queue per source (its declared limits), named tasks to the ingest function.

Task ids are derived from the job id (and part key), so Cloud Tasks itself refuses a duplicate
enqueue for about an hour; beyond that, the job's Firestore document is what deduplicates.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from common import celeryq
from common.core.tasks import QueueConfig, TaskPayload, task_id
from common.gcp import names
from common.gcp.clients import tasks
from common.settings import settings
from common.sources.base import Source

__all__ = ["TaskPayload", "enqueue", "enqueue_many", "ensure_queue", "has_task", "queue_path", "task_id", "task_names"]


def queue_path(source: str) -> str:
    """The source's queue (``names.queue_path``)."""
    return names.queue_path(source)


def queue_spec(source: type[Source] | Source) -> Any:
    """The ``tasks_v2.Queue`` a source declares."""
    from google.cloud import tasks_v2
    from google.protobuf import duration_pb2

    q: QueueConfig = source.queue

    def seconds(value: float) -> duration_pb2.Duration:
        d = duration_pb2.Duration()
        d.FromNanoseconds(int(value * 1e9))
        return d

    return tasks_v2.Queue(
        name=queue_path(source.name),
        rate_limits=tasks_v2.RateLimits(
            max_dispatches_per_second=q.max_dispatches_per_second,
            max_concurrent_dispatches=q.max_concurrent_dispatches,
        ),
        retry_config=tasks_v2.RetryConfig(
            max_attempts=q.max_attempts,
            min_backoff=seconds(q.min_backoff),
            max_backoff=seconds(q.max_backoff),
            max_doublings=q.max_doublings,
        ),
    )


def ensure_queue(source: type[Source] | Source) -> None:
    """Create the source's queue, or update it to the declared settings."""
    from google.api_core.exceptions import AlreadyExists

    spec = queue_spec(source)
    try:
        tasks().create_queue(parent=names.location_path(), queue=spec)
    except AlreadyExists:
        tasks().update_queue(queue=spec)


def enqueue(payload: TaskPayload, source: type[Source] | Source, *, schedule_time: datetime | None = None) -> bool:
    """Enqueue the task for ``payload``. Returns False when a task of that name exists (a duplicate).

    Raises:
        google.api_core.exceptions.GoogleAPICallError: the queue refused the task for another reason.
    """
    if settings().dispatch == "celery":  # EXECUTOR HOOK (celery): until the dispatch port is wired in the runtime
        return celeryq.dispatcher().enqueue(payload, source.queue, schedule_time=schedule_time)
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import tasks_v2
    from google.protobuf import duration_pb2, timestamp_pb2

    s = settings()
    http = tasks_v2.HttpRequest(
        http_method=tasks_v2.HttpMethod.POST,
        url=s.ingest_url.format(source=payload.source),
        headers={"Content-Type": "application/json"},
        body=orjson.dumps(payload.model_dump(mode="json")),
    )
    if s.invoker_service_account:
        http.oidc_token = tasks_v2.OidcToken(service_account_email=s.invoker_service_account)
    deadline = duration_pb2.Duration(seconds=int(source.queue.dispatch_deadline))
    task = tasks_v2.Task(
        name=names.task_path(payload.source, task_id(payload.job_id, payload.part)),
        http_request=http,
        dispatch_deadline=deadline,
    )
    if schedule_time is not None:
        ts = timestamp_pb2.Timestamp()
        ts.FromDatetime(schedule_time)
        task.schedule_time = ts
    try:
        tasks().create_task(parent=queue_path(payload.source), task=task)
        return True
    except AlreadyExists:
        return False


def task_names(source: type[Source] | Source) -> list[str]:
    """Every task name in the source's queue (one listing, for the reaper)."""
    if settings().dispatch == "celery":  # EXECUTOR HOOK (celery): the ids the Celery dispatcher has not finished
        return [names.task_path(source.name, tid) for tid in celeryq.dispatcher().pending(source.name)]
    request = {"parent": queue_path(source.name), "page_size": 1000}
    return [t.name for t in tasks().list_tasks(request=request)]


def has_task(job_id: str, source: type[Source] | Source, task_names: list[str]) -> bool:
    """Whether ``task_names`` holds a task of the job (its first task, or one of its part tasks)."""
    first = names.task_path(source.name, task_id(job_id))
    return any(n == first or n.startswith(first + "--") for n in task_names)


#: Parallel CreateTask calls for fan-outs; the gRPC channel multiplexes them, so a few dozen suffice.
ENQUEUE_CONCURRENCY = 32


def enqueue_many(
    payloads: list[TaskPayload], source: type[Source] | Source, *, concurrency: int = ENQUEUE_CONCURRENCY
) -> tuple[int, int]:
    """Enqueue many tasks concurrently (a 10,000-task backfill is not 10,000 round trips in series).

    Returns ``(created, duplicates)``.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: the first refusal other than a duplicate name.
    """
    from concurrent.futures import ThreadPoolExecutor

    if not payloads:
        return 0, 0
    if settings().dispatch == "celery":  # EXECUTOR HOOK (celery): one Redis round trip claims every task id
        return celeryq.dispatcher().enqueue_many(payloads, source.queue)
    with ThreadPoolExecutor(max_workers=min(concurrency, len(payloads)), thread_name_prefix="enqueue") as pool:
        results = list(pool.map(lambda p: enqueue(p, source), payloads))
    created = sum(results)
    return created, len(results) - created
