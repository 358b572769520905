"""The bare Celery peer of P6 and P7: a Celery app on Redis with one no-op task, nothing of Tributary.

The worker runs ``celery -A tests.bench.celery_bare worker``; its broker is ``BENCH_CELERY_BROKER_URL``.
The sending side builds its own app with :func:`make_app` for the Redis of each measure: a Celery app keeps
its broker connections and result backend once used, so one app shared by two measures (each with a Redis
of its own) would send the second one's tasks to the first one's stopped server.
Configured as Tributary's executor is, so the comparison is about the job model only: ``acks_late``,
``reject_on_worker_lost``, prefetch 1, JSON, results in Redis.
"""

from __future__ import annotations

import os

from celery import Celery

QUEUE = "bare"
TASK = "bare.noop"


def make_app(broker_url: str) -> Celery:
    """A bare Celery app on ``broker_url`` (Redis as broker and result backend) with the no-op task."""
    app = Celery("bare", broker=broker_url, backend=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        task_default_queue=QUEUE,
    )
    app.task(name=TASK)(noop)
    return app


def noop() -> None:
    """Nothing: what is measured is Celery and Redis themselves."""


#: The worker's app (``celery -A tests.bench.celery_bare worker``).
app = make_app(os.environ.get("BENCH_CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
