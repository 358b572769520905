"""The bare Celery peer of P6 and P7: a Celery app on Redis with one no-op task, nothing of Tributary.

The worker runs ``celery -A tests.bench.celery_bare worker``; the broker is ``BENCH_CELERY_BROKER_URL``.
Configured as Tributary's executor is, so the comparison is about the job model only: ``acks_late``,
``reject_on_worker_lost``, prefetch 1, JSON, results in Redis.
"""

from __future__ import annotations

import os

from celery import Celery

QUEUE = "bare"

app = Celery("bare", broker=os.environ.get("BENCH_CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    result_backend=app.conf.broker_url,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
)


@app.task(name="bare.noop")
def noop() -> None:
    """Nothing: what is measured is Celery and Redis themselves."""
