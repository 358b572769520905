"""The Celery worker: its app and its one task, which runs the same ingest code as the ingest function.

Start it with ``tributary worker`` or ``celery -A common.runtime.workers.celery_app worker``; it consumes
one queue per source (``ingest-<source>``). The outcome of ``run_task`` maps to Celery as it maps to Cloud
Tasks answers in ``common/runtime/outcomes.py``: success and permanent failure end the task; a transient
failure is retried after the source's backoff (``QueueConfig``) until its last attempt, whose
:class:`Delivery` says it is final, so the job fails instead of retrying forever. A task redelivered after
its worker was lost counts as an attempt; past ``max_attempts`` it fails without running again.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Task
from celery.signals import worker_ready
from kombu import Queue
from pydantic import ValidationError

from common.celeryq import TASK_NAME, backoff, celery_app, control, dispatcher, queue_name
from common.core.events import Event, EventData, EventType
from common.core.tasks import QueueConfig, TaskPayload, task_id
from common.runtime.ingest import Delivery, publish, run_task
from common.runtime.logs import setup_logging
from common.settings import Settings, settings
from common.sources import all_sources, get_source

__all__ = ["app", "ingest", "make_app", "worker_argv"]

log = logging.getLogger("tributary.worker")


def ingest(task: Task, body: dict[str, Any], queue: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one delivery of an ingest task (the Celery task :data:`TASK_NAME`).

    Raises:
        celery.exceptions.Retry: a transient failure with attempts left (Celery sends the task again later).
    """
    try:
        payload = TaskPayload.model_validate(body)
        source = get_source(payload.source)
    except (ValidationError, KeyError) as exc:  # not a task our dispatcher sends: nothing to run or retry
        log.error("task %s refused: %s", task.request.id, exc)
        return {"error": {"code": "invalid_task", "message": str(exc)}}
    config = QueueConfig(**queue) if queue else source.queue
    tid = task.request.id or task_id(payload.job_id, payload.part, payload.run)
    executor = dispatcher()
    attempt = 1
    if task.request.retries or (task.request.delivery_info or {}).get("redelivered"):
        # Not the first delivery (the Redis transport marks a task given back by a lost worker "redelivered").
        attempt = max(executor.redelivered(tid), task.request.retries + 1)
    if attempt > config.max_attempts:
        return _give_up(payload, tid, attempt - 1)
    outcome = run_task(payload, Delivery(attempt=attempt, max_attempts=config.max_attempts, task_name=tid))
    if outcome.retry:
        countdown = max(backoff(attempt, config), outcome.retry_after or 0.0)
        raise task.retry(countdown=countdown, max_retries=None, queue=queue_name(payload.source))
    executor.finished(tid, payload.source)
    return outcome.body


def _give_up(payload: TaskPayload, tid: str, attempts: int) -> dict[str, Any]:
    """Fail the job of a task whose workers were lost on every attempt (a task that kills its worker)."""
    error = {
        "kind": "transient",
        "type": "WorkerLost",
        "message": f"gave up after {attempts} attempts: the worker running the task was lost every time",
    }
    log.error("job %s: %s", payload.job_id, error["message"])
    data = EventData(job_id=payload.job_id, source=payload.source, attempt=attempts, run=payload.run, error=error)
    seq = payload.part.key if payload.part is not None else "0"
    publish(Event.make(EventType.failed, data, seq=f"{seq}.lost"))
    dispatcher().finished(tid, payload.source)
    return {"job_id": payload.job_id, "error": error}


@worker_ready.connect(dispatch_uid="tributary.keep_paused")
def keep_paused(sender: Any = None, **_: Any) -> None:
    """A worker started while ``tributary queues pause`` holds a source's queue does not consume it either."""
    for queue in control.adopt_pauses(dispatcher(), sender, queue_name):
        log.warning("queue %s is paused (`tributary queues resume` starts it): not consuming it", queue)


def make_app(s: Settings | None = None) -> Any:
    """The worker's Celery app: the configured broker, every source's queue, and the ingest task."""
    s = s or settings()
    app = celery_app(s.celery_broker_url, s.celery_visibility_timeout)
    app.conf.task_queues = [Queue(queue_name(src.name, s)) for src in all_sources()]
    app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)(ingest)
    return app


def worker_argv(*, concurrency: int, sources: list[str] | None = None, loglevel: str = "INFO") -> list[str]:
    """The arguments of ``celery worker`` that ``tributary worker`` runs: prefork, one queue per source."""
    names = sources or [src.name for src in all_sources()]
    return [
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        f"--queues={','.join(queue_name(n) for n in names)}",
        f"--loglevel={loglevel}",
        "--without-gossip",
        "--without-mingle",
        # Unique per worker: Celery's queue controls (pause, resume) address workers by name, and two workers
        # of one host named alike would be taken for one.
        f"--hostname=tributary-{os.getpid()}@%h",
    ]


setup_logging()
#: The app ``celery -A common.runtime.workers.celery_app worker`` finds.
app = make_app()
