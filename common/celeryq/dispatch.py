"""The Celery dispatcher: ingest tasks as Celery tasks on a Redis broker, one Celery queue per source.

It sends the task by name (:data:`TASK_NAME`, ``send_task``), so it never imports the worker's code; the
worker (``common/runtime/workers/celery_app.py``, ``tributary worker``) runs ``run_task`` on it. What Celery
does not do as Cloud Tasks does is done here with Redis:

- **named-task dedup**: a task id is claimed with ``SET NX`` and a TTL (``celery_dedup_ttl``) before it is
  sent (in one round trip with its entry in the pending set, below), so a second enqueue of the same id is
  refused (False) for that long, like a Cloud Tasks task name;
- **attempts**: every delivery after the first increments a counter per task id
  (:meth:`CeleryDispatcher.redelivered`), so a task redelivered after a lost worker counts as an attempt and
  ``max_attempts`` bounds it;
- **the reaper's question** (is a task of this job still queued?): the ids enqueued and not yet finished are
  kept in a set per source (:meth:`CeleryDispatcher.pending`).

Celery and redis are imported on first use: the api, ingest and status functions of the Cloud Tasks
deployment never pay for them.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Any

from common.celeryq import control
from common.core.errors import TransientError
from common.core.ports import QueueAction, QueueState
from common.core.tasks import QueueConfig, TaskPayload, task_id
from common.settings import Settings, settings

__all__ = ["TASK_NAME", "CeleryDispatcher", "backoff", "celery_app", "dispatcher", "queue_name"]

#: The name the worker registers its ingest task under; the dispatcher sends by this name.
TASK_NAME = "tributary.ingest"
#: How long a delivery counter outlives its task (a job is never retried for longer than this).
ATTEMPTS_TTL = 7 * 24 * 3600
_PREFIX = "tributary:"
#: Claim a task id (``SET NX`` with a TTL) and, when it was new, add it to its source's pending set: one
#: round trip. KEYS: the dedup key, the pending set; ARGV: the TTL in seconds, the task id.
_CLAIM = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('SADD', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


def queue_name(source: str, s: Settings | None = None) -> str:
    """The source's Celery queue: the Cloud Tasks queue's name (``ingest-<source>``)."""
    return f"{(s or settings()).queue_prefix}{source}"


def backoff(attempt: int, queue: QueueConfig) -> float:
    """Seconds before retry number ``attempt`` (1 = after the first attempt), as Cloud Tasks computes it.

    The delay starts at ``min_backoff``, doubles ``max_doublings`` times, then grows linearly by that last
    step, and never exceeds ``max_backoff``.
    """
    n = max(1, attempt) - 1
    if n <= queue.max_doublings:
        delay = queue.min_backoff * 2**n
    else:
        step = queue.min_backoff * 2**queue.max_doublings
        delay = step * (n - queue.max_doublings + 1)
    return float(min(queue.max_backoff, delay))


def celery_app(broker_url: str, visibility_timeout: float = 3600.0) -> Any:
    """A Celery app on ``broker_url`` (Redis as broker and result backend), configured for at-least-once runs.

    ``acks_late`` with ``reject_on_worker_lost``: a task is acknowledged after it ran, and a worker process lost
    mid-task gives it back to the queue; one task is reserved per worker process at a time.
    """
    from celery import Celery  # the Celery executor's alone: never at the Cloud Tasks functions' cold start

    app = Celery("tributary", broker=broker_url, backend=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_transport_options={
            "visibility_timeout": visibility_timeout,
            # The worker's sweep that gives back the tasks of a lost worker runs every interval x throttle
            # seconds (100 s by default): once per interval, at most 10 s, so recovery follows the timeout.
            "unacked_restore_interval": max(1, min(10, int(visibility_timeout / 4))),
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": visibility_timeout},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app


class CeleryDispatcher:
    """The dispatch port (``common.core.ports.Dispatcher``) on Celery and Redis."""

    def __init__(self, broker_url: str, *, visibility_timeout: float = 3600.0, dedup_ttl: float = 3600.0) -> None:
        self.broker_url = broker_url
        self.visibility_timeout = visibility_timeout
        self.dedup_ttl = int(max(1, dedup_ttl))
        self._lock = threading.Lock()
        self._app: Any = None
        self._redis: Any = None
        self._claim_script: Any = None

    @property
    def app(self) -> Any:
        with self._lock:
            if self._app is None:
                self._app = celery_app(self.broker_url, self.visibility_timeout)
            return self._app

    @property
    def redis(self) -> Any:
        with self._lock:
            if self._redis is None:
                import redis  # with Celery's Redis transport; imported on first use like Celery

                self._redis = redis.Redis.from_url(self.broker_url, socket_timeout=10, socket_connect_timeout=5)
                self._claim_script = self._redis.register_script(_CLAIM)
            return self._redis

    def _claim(self, tid: str, source: str, client: Any = None) -> Any:
        """Claim ``tid`` and mark it pending if it was new (:data:`_CLAIM`); 1 when new, 0 for a duplicate
        (on a pipeline ``client``, its result comes with the pipeline's)."""
        redis = self.redis
        return self._claim_script(
            keys=[_dedup_key(tid), _pending_key(source)], args=[self.dedup_ttl, tid], client=client or redis
        )

    # ---- the port ------------------------------------------------------------------------------------------
    def enqueue(self, payload: TaskPayload, queue: QueueConfig, *, schedule_time: datetime | None = None) -> bool:
        """Send the task unless its id is already claimed; False for a duplicate.

        Raises:
            TransientError: Redis (the broker) is unreachable; nothing was sent.
        """
        tid = task_id(payload.job_id, payload.part, payload.run)
        with _broker_errors(self.broker_url):
            if not self._claim(tid, payload.source):
                return False
            self._send(payload, queue, tid, schedule_time)
        return True

    def enqueue_many(self, payloads: list[TaskPayload], queue: QueueConfig) -> tuple[int, int]:
        """Claim every id in one round trip, then send the tasks whose ids were new; ``(created, duplicates)``.

        Raises:
            TransientError: Redis (the broker) is unreachable (the tasks sent before stay sent).
        """
        if not payloads:
            return 0, 0
        ids = [task_id(p.job_id, p.part, p.run) for p in payloads]
        with _broker_errors(self.broker_url):
            pipe = self.redis.pipeline(transaction=False)
            for payload, tid in zip(payloads, ids, strict=True):
                self._claim(tid, payload.source, pipe)
            claimed = pipe.execute()
            created = 0
            for payload, tid, new in zip(payloads, ids, claimed, strict=True):
                if new:
                    self._send(payload, queue, tid, None)
                    created += 1
        return created, len(payloads) - created

    def pending(self, source: str) -> list[str]:
        """The task ids enqueued for ``source`` and not yet finished (waiting, running or between retries).

        Raises:
            TransientError: Redis is unreachable.
        """
        with _broker_errors(self.broker_url):
            return sorted(m.decode() for m in self.redis.smembers(_pending_key(source)))

    # ---- the operator's queue controls (common.core.ports.QueueControl; common.celeryq.control) -------------
    def delete_job_tasks(self, job_id: str, source: str) -> int:
        """Remove the job's tasks still waiting in the source's queue; returns how many went.

        Raises:
            TransientError: Redis is unreachable.
        """
        with _broker_errors(self.broker_url):
            return control.delete_job_tasks(self, job_id, queue_name(source), _pending_key(source))

    def queue_states(self, sources: list[str]) -> list[QueueState]:
        """Each source's queue: PAUSED once paused here, else RUNNING.

        Raises:
            TransientError: Redis is unreachable.
        """
        with _broker_errors(self.broker_url):
            return control.queue_states(self, queue_name, sources)

    def set_queue_state(self, source: str, action: QueueAction) -> QueueState | None:
        """Pause or resume the workers' consumption of the source's queue, or purge it (``common.celeryq.control``
        says what Celery cannot do as Cloud Tasks does).

        Raises:
            TransientError: Redis is unreachable.
        """
        with _broker_errors(self.broker_url):
            control.set_queue_state(self, source, action, queue_name(source), _pending_key(source))
        return self.queue_states([source])[0]

    # ---- what the worker tells it --------------------------------------------------------------------------
    def delivered(self, tid: str) -> int:
        """Count one delivery of task ``tid``; returns its attempt number (1 for the first delivery).

        Raises:
            TransientError: Redis is unreachable.
        """
        with _broker_errors(self.broker_url):
            pipe = self.redis.pipeline(transaction=False)
            pipe.incr(_attempts_key(tid))
            pipe.expire(_attempts_key(tid), ATTEMPTS_TTL)
            return int(pipe.execute()[0])

    def redelivered(self, tid: str) -> int:
        """Count a delivery of task ``tid`` after its first (a retry, or the task given back after its worker was
        lost); returns its attempt number (2 for the second delivery). The worker does not count a first
        delivery (Celery says which one is: no retry yet, not redelivered), which saves a round trip per task.

        Raises:
            TransientError: Redis is unreachable.
        """
        return self.delivered(tid) + 1

    def finished(self, tid: str, source: str) -> None:
        """Forget a task that ended (succeeded, failed for good, or fanned out): no longer pending.

        Its dedup claim stays until its TTL, as a Cloud Tasks name does after the task is gone.

        Raises:
            TransientError: Redis is unreachable.
        """
        with _broker_errors(self.broker_url):
            pipe = self.redis.pipeline(transaction=False)
            pipe.srem(_pending_key(source), tid)
            pipe.delete(_attempts_key(tid))
            pipe.execute()

    def _send(self, payload: TaskPayload, queue: QueueConfig, tid: str, eta: datetime | None) -> None:
        """Send the claimed task. Its result is ignored (the job's events carry the outcome): without
        ``ignore_result``, Celery's Redis backend subscribes to each task's result channel when it is sent and
        unsubscribes when the handle is dropped, two commands per task for a result nobody reads."""
        try:
            self.app.send_task(
                TASK_NAME,
                args=[payload.model_dump(mode="json")],
                kwargs={"queue": asdict(queue)},
                task_id=tid,
                queue=queue_name(payload.source),
                eta=eta,
                time_limit=queue.dispatch_deadline + 30,
                soft_time_limit=queue.dispatch_deadline,
                ignore_result=True,
            )
        except BaseException:
            # Not sent: free the id, so that the caller's retry (or the reaper) can enqueue it.
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(_dedup_key(tid))
            pipe.srem(_pending_key(payload.source), tid)
            pipe.execute()
            raise


def _dedup_key(tid: str) -> str:
    return f"{_PREFIX}task:{tid}"


def _pending_key(source: str) -> str:
    return f"{_PREFIX}pending:{source}"


def _attempts_key(tid: str) -> str:
    return f"{_PREFIX}attempts:{tid}"


@contextlib.contextmanager
def _broker_errors(url: str) -> Iterator[None]:
    """Turn a Redis or broker connection failure into a :class:`TransientError` that says where."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    try:
        yield
    except (OperationalError, RedisConnectionError, RedisTimeoutError) as exc:
        raise TransientError(f"the Celery broker at {_redact(url)} is unreachable: {exc}") from exc


def _redact(url: str) -> str:
    """The broker URL without its password."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"


@functools.lru_cache(maxsize=4)
def _dispatcher(broker_url: str, visibility_timeout: float, dedup_ttl: float) -> CeleryDispatcher:
    return CeleryDispatcher(broker_url, visibility_timeout=visibility_timeout, dedup_ttl=dedup_ttl)


def dispatcher(s: Settings | None = None) -> CeleryDispatcher:
    """The process's dispatcher for the configured broker (cached: one connection pool per broker)."""
    s = s or settings()
    return _dispatcher(s.celery_broker_url, s.celery_visibility_timeout, s.celery_dedup_ttl)
