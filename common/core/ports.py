"""The ports the runtime talks to, each with adapters chosen by settings (docs/design.md, "Executors").

Only the dispatch port is written here yet: where an ingest task goes (Cloud Tasks, Celery, the embedded
executor). An adapter is told the source's :class:`QueueConfig` with each call, so it can honour the
source's limits without importing the source registry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from common.core.tasks import QueueConfig, TaskPayload


class Dispatcher(Protocol):
    """Delivers ingest tasks at least once, honouring the source's queue limits and retry policy."""

    def enqueue(self, payload: TaskPayload, queue: QueueConfig, *, schedule_time: datetime | None = None) -> bool:
        """Enqueue one task; False when a task of the same id is already known (a duplicate)."""
        ...

    def enqueue_many(self, payloads: list[TaskPayload], queue: QueueConfig) -> tuple[int, int]:
        """Enqueue several tasks of one source; returns ``(created, duplicates)``."""
        ...

    def pending(self, source: str) -> list[str]:
        """The task ids (``task_id``) waiting or running in the source's queue, for the reaper."""
        ...
