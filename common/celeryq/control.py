"""The operator's queue controls on the Celery dispatcher: pause and resume, purge, and a cancelled job's tasks.

Celery has no paused queue as Cloud Tasks has; what it offers, and what is done with it:

- **pause** asks the running workers that consume ``ingest-<source>`` to stop (remote control
  ``cancel_consumer``), and records them in Redis (``tributary:paused:<source>``), which :func:`queue_states`
  reads. Tasks stay in Redis and enqueues go on. Its limits: a task a worker already reserved (one per process,
  and retries waiting for their countdown) still runs. A worker started while the queue is paused leaves it
  alone too (:func:`adopt_pauses`, at its ``worker_ready``), as long as it runs Tributary's worker app;
- **resume** asks those same workers to consume it again (``add_consumer``), not every worker: a worker
  started for other sources' queues keeps to them;
- **purge** removes the messages waiting in the queue's Redis list, as Celery's ``purge -Q`` does, in one
  transaction that also tells which tasks went, so they are no longer pending for the reaper. Their ids stay
  claimed for ``celery_dedup_ttl``, as a purged Cloud Tasks task's name stays taken for about an hour;
- a cancelled job's tasks still waiting are removed from the list one by one (``LREM``); one a worker already
  holds runs, and finds its job cancelled (``common.runtime.ingest`` checks the job first).

Priorities are not used (``send_task`` sets none), so a queue is the one Redis list of its name.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from common.core.ports import QueueAction, QueueState

if TYPE_CHECKING:
    from common.celeryq.dispatch import CeleryDispatcher

#: Seconds the remote-control calls wait for the workers' replies.
CONTROL_TIMEOUT = 2.0
_PREFIX = "tributary:"


def paused_key(source: str) -> str:
    """The Redis key that marks a paused source's queue and names the workers that were consuming it."""
    return f"{_PREFIX}paused:{source}"


def task_id_of(message: bytes) -> str:
    """The Celery task id of a message in a queue's Redis list ("" when it is not a Celery message)."""
    try:
        return str(json.loads(message).get("headers", {}).get("id") or "")
    except (ValueError, AttributeError):
        return ""


def of_job(tid: str, job_id: str) -> bool:
    """Whether ``tid`` is a task of the job (its first task, a later run's, or a part's: ``common.core.tasks``)."""
    return tid == job_id or tid.startswith(job_id + "--")


def queue_states(d: CeleryDispatcher, queue: Any, sources: list[str]) -> list[QueueState]:
    """Each source's queue, PAUSED or RUNNING; Celery has no rate or concurrency limit per queue (0)."""
    pipe = d.redis.pipeline(transaction=False)
    for source in sources:
        pipe.exists(paused_key(source))
    paused = pipe.execute()
    return [
        QueueState(source, queue(source), "PAUSED" if stopped else "RUNNING")
        for source, stopped in zip(sources, paused, strict=True)
    ]


def consumers(d: CeleryDispatcher, queue: str) -> list[str]:
    """The running workers that consume ``queue`` (those that answer within :data:`CONTROL_TIMEOUT`)."""
    replies = d.app.control.inspect(timeout=CONTROL_TIMEOUT).active_queues() or {}
    return sorted(host for host, queues in replies.items() if any(q.get("name") == queue for q in queues or ()))


def pause(d: CeleryDispatcher, source: str, queue: str) -> None:
    """Stop the workers that consume ``queue``, and remember them (with those of an earlier pause)."""
    hosts = set(consumers(d, queue))
    if hosts:
        d.app.control.cancel_consumer(queue, destination=sorted(hosts), reply=True, timeout=CONTROL_TIMEOUT)
    if (before := d.redis.get(paused_key(source))) is not None:
        hosts |= set(json.loads(before))
    d.redis.set(paused_key(source), json.dumps(sorted(hosts)))


def resume(d: CeleryDispatcher, source: str, queue: str) -> None:
    """Have the workers the pause stopped consume ``queue`` again, and clear the mark."""
    if (before := d.redis.get(paused_key(source))) is None:
        return
    if hosts := json.loads(before):
        d.app.control.add_consumer(queue, destination=hosts, reply=True, timeout=CONTROL_TIMEOUT)
    d.redis.delete(paused_key(source))


def purge(d: CeleryDispatcher, source: str, queue: str, pending_key: str) -> int:
    """Remove every message waiting in ``queue`` and its ids from the pending set; returns how many went."""
    pipe = d.redis.pipeline(transaction=True)
    pipe.lrange(queue, 0, -1)
    pipe.delete(queue)
    messages, _ = pipe.execute()
    if ids := [tid for tid in map(task_id_of, messages) if tid]:
        d.redis.srem(pending_key, *ids)
    return len(messages)


def delete_job_tasks(d: CeleryDispatcher, job_id: str, queue: str, pending_key: str) -> int:
    """Remove the job's messages still waiting in ``queue``; returns how many went."""
    deleted, gone = 0, []
    for message in d.redis.lrange(queue, 0, -1):
        tid = task_id_of(message)
        if of_job(tid, job_id) and d.redis.lrem(queue, 1, message):
            deleted += 1
            gone.append(tid)
    if gone:
        d.redis.srem(pending_key, *gone)
    return deleted


def adopt_pauses(d: CeleryDispatcher, consumer: Any, queue_of: Any) -> list[str]:
    """At a worker's start (Celery's ``worker_ready``): stop consuming the paused queues among those it consumes,
    and record it with the workers the pause stopped, so that resume starts it again; returns those queues.

    ``queue_of`` maps a source to its queue (``common.celeryq.queue_name``).
    """
    selected = consumer.app.amqp.queues.consume_from or consumer.app.amqp.queues
    marks = map(bytes.decode, d.redis.scan_iter(match=paused_key("*")))
    keys = {queue_of(key.removeprefix(paused_key(""))): key for key in marks}
    paused = sorted(q for q in selected if q in keys)
    for queue in paused:
        consumer.call_soon(consumer.cancel_task_queue, queue)
        before = d.redis.get(keys[queue])
        hosts = set(json.loads(before)) if before is not None else set()
        d.redis.set(keys[queue], json.dumps(sorted(hosts | {consumer.hostname})))
    return paused


def set_queue_state(d: CeleryDispatcher, source: str, action: QueueAction, queue: str, pending_key: str) -> None:
    """Pause, resume or purge the source's queue (see the module docstring for what Celery can and cannot)."""
    if action == "pause":
        pause(d, source, queue)
    elif action == "resume":
        resume(d, source, queue)
    else:
        purge(d, source, queue, pending_key)
