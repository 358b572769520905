"""The Celery executor's dispatch adapter: ingest tasks on a Redis broker (the rollback path from Cloud Tasks)."""

from common.celeryq.dispatch import TASK_NAME, CeleryDispatcher, backoff, celery_app, dispatcher, queue_name

__all__ = ["TASK_NAME", "CeleryDispatcher", "backoff", "celery_app", "dispatcher", "queue_name"]
