"""Cloud Tasks adapter: one queue per source (its declared limits), named tasks to the ingest function.

Task ids are derived from the job id (and part key), so Cloud Tasks itself refuses a duplicate
enqueue for about an hour; beyond that, the job's Firestore document is what deduplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson

from common.core.tasks import QueueConfig, TaskPayload, task_id
from common.gcp import names
from common.gcp.clients import tasks
from common.settings import settings

if TYPE_CHECKING:  # pragma: no cover (a type only: the contract loads with a source's module, never at cold start)
    from common.sources.base import Source

__all__ = [
    "QueueAction",
    "QueueState",
    "TaskPayload",
    "delete_job_tasks",
    "enqueue",
    "enqueue_many",
    "ensure_queue",
    "has_task",
    "queue_path",
    "queue_states",
    "set_queue_state",
    "task_id",
    "task_names",
]


def queue_path(source: str) -> str:
    """The source's queue (``names.queue_path``)."""
    return names.queue_path(source)


def queue_spec(source: type[Source] | Source, queue: QueueConfig | None = None) -> Any:
    """The ``tasks_v2.Queue`` a source declares (or ``queue``'s limits, e.g. the local stack's)."""
    from google.cloud import tasks_v2
    from google.protobuf import duration_pb2

    q: QueueConfig = queue or source.queue

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


def ensure_queue(source: type[Source] | Source, queue: QueueConfig | None = None) -> None:
    """Create the source's queue, or update it to the declared settings (or to ``queue``'s)."""
    from google.api_core.exceptions import AlreadyExists

    spec = queue_spec(source, queue)
    try:
        tasks().create_queue(parent=names.location_path(), queue=spec)
    except AlreadyExists:
        tasks().update_queue(queue=spec)


def enqueue(payload: TaskPayload, source: type[Source] | Source, *, schedule_time: datetime | None = None) -> bool:
    """Enqueue the task for ``payload``. Returns False when a task of that name exists (a duplicate).

    Raises:
        google.api_core.exceptions.GoogleAPICallError: the queue refused the task for another reason.
    """
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
        name=names.task_path(payload.source, task_id(payload.job_id, payload.part, payload.run)),
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
    with ThreadPoolExecutor(max_workers=min(concurrency, len(payloads)), thread_name_prefix="enqueue") as pool:
        results = list(pool.map(lambda p: enqueue(p, source), payloads))
    created = sum(results)
    return created, len(results) - created


def delete_job_tasks(job_id: str, source: type[Source] | Source) -> int:
    """Delete every task of the job still in its queue (its first task and its parts, of any run); returns how
    many. A task that runs or went meanwhile is no error: the ingest checks the job before each part.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: the queue could not be listed or refused a deletion.
    """
    from google.api_core.exceptions import NotFound

    deleted = 0
    for name in task_names(source):
        if has_task(job_id, source, [name]):
            try:
                tasks().delete_task(name=name)
                deleted += 1
            except NotFound:
                pass
    return deleted


@dataclass(frozen=True)
class QueueState:
    """A source's queue as an operator sees it."""

    source: str
    queue: str
    state: str  # RUNNING, PAUSED, DISABLED, or MISSING (no such queue)
    max_dispatches_per_second: float = 0.0
    max_concurrent_dispatches: int = 0


def _state(source: str, queue: Any) -> QueueState:
    rate = queue.rate_limits
    return QueueState(
        source=source,
        queue=queue.name,
        state=queue.state.name,
        max_dispatches_per_second=rate.max_dispatches_per_second,
        max_concurrent_dispatches=rate.max_concurrent_dispatches,
    )


def queue_states(sources: list[str]) -> list[QueueState]:
    """The queue of each source; a source without a queue is ``MISSING``. One ``GetQueue`` per source, which the
    per-queue viewer role allows (listing the location would need a project-wide role).

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Cloud Tasks could not answer.
    """
    from google.api_core.exceptions import NotFound

    out = []
    for source in sources:
        try:
            out.append(_state(source, tasks().get_queue(name=queue_path(source))))
        except NotFound:
            out.append(QueueState(source, queue_path(source), "MISSING"))
    return out


QueueAction = Literal["pause", "resume", "purge"]


def set_queue_state(source: str, action: QueueAction) -> QueueState | None:
    """Pause, resume or purge (delete every task of) the source's queue with Cloud Tasks' own calls; None when
    the source has no queue.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: Cloud Tasks refused.
    """
    from google.api_core.exceptions import NotFound

    call = {"pause": tasks().pause_queue, "resume": tasks().resume_queue, "purge": tasks().purge_queue}[action]
    try:
        return _state(source, call(name=queue_path(source)))
    except NotFound:
        return None
