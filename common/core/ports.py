"""The ports the runtime talks to, each with adapters chosen by settings (docs/design.md, "Executors").

- :class:`Dispatcher`: where an ingest task goes (Cloud Tasks, Celery, the embedded executor);
- :class:`EventBus`: where job events go (Pub/Sub, or the embedded bus that applies them in process);
- :class:`StateStore`: jobs with their event markers and parts, source state and runs, batches and dead
  letters (Firestore, or SQLite).

An adapter is told the source's :class:`QueueConfig` with each call, so it can honour the source's limits
without importing the source registry. The state port's methods are the calls the runtime made on the
Firestore repositories, so every adapter keeps one job model, one state machine and one event rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from common.core.events import Event
from common.core.jobs import Job
from common.core.source_state import SourceState
from common.core.tasks import QueueConfig, TaskPayload

#: The most event markers :meth:`StateStore.job_events` returns (a job's timeline in the console).
MAX_TIMELINE = 500


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


@dataclass(frozen=True)
class QueueState:
    """A source's queue as an operator sees it."""

    source: str
    queue: str
    state: str  # RUNNING, PAUSED, DISABLED, or MISSING (no such queue)
    max_dispatches_per_second: float = 0.0
    max_concurrent_dispatches: int = 0


QueueAction = Literal["pause", "resume", "purge"]


@runtime_checkable
class QueueControl(Protocol):
    """What an operator does to a dispatcher's queues (Cloud Tasks and the embedded queue offer it; a
    dispatcher without it answers the API's queue and cancel calls with ``501``)."""

    def delete_job_tasks(self, job_id: str, source: str) -> int:
        """Delete the job's tasks still waiting (any run, any part); returns how many went."""
        ...

    def queue_states(self, sources: list[str]) -> list[QueueState]:
        """The queue of each source."""
        ...

    def set_queue_state(self, source: str, action: QueueAction) -> QueueState | None:
        """Pause, resume or purge the source's queue; None when it has none."""
        ...


class WrongState(Exception):
    """The job is not in a state the action applies to (the API answers 409)."""

    def __init__(self, job: Job, action: str) -> None:
        super().__init__(f"job {job.job_id} is {job.status.value}; {action}")
        self.job = job


class EventBus(Protocol):
    """Carries job events (CloudEvents) from the ingest tasks to the status consumer, at least once."""

    def publish(self, event: Event) -> str:
        """Publish ``event``; returns a message id once the bus holds it durably.

        Raises:
            common.core.errors.TransientError: the bus did not accept it (the task is retried).
        """
        ...


@dataclass(frozen=True)
class StoredLetter:
    """An event the status consumer could never read, kept for ``tributary dlq``."""

    id: str
    reason: str
    data: bytes
    received_at: str


class StateStore(Protocol):
    """Jobs, their event markers and parts; sources' positions and runs; batches; dead letters."""

    def create_job(self, job: Job) -> tuple[Job, bool]:
        """Write ``job`` unless a job with its id exists. Returns the stored job and whether it is new."""
        ...

    def get_job(self, job_id: str, *, with_progress: bool = True) -> Job | None:
        """The job (with parts counted while it runs), or None."""
        ...

    def list_jobs(
        self, *, source: str | None = None, status: str | None = None, batch_id: str | None = None, limit: int = 50
    ) -> list[Job]:
        """The newest jobs first, filtered by source, status and batch."""
        ...

    def record_event(self, event: Event) -> Job | None:
        """Apply ``event`` once (its marker); None for an event of a job that was never created."""
        ...

    def finish_if_complete(self, job_id: str) -> Job | None:
        """Mark a multi-part job succeeded once every part is stored; idempotent."""
        ...

    def count_parts(self, job_id: str, run: int = 1) -> int:
        """How many parts of the job's ``run`` have stored their result."""
        ...

    def retry_job(self, job_id: str, now: datetime) -> Job | None:
        """Start a new run of a failed or cancelled job (``common.core.jobs.new_run``); None when unknown.

        Raises:
            WrongState: the job is queued, running or succeeded.
        """
        ...

    def cancel_job(self, job_id: str, now: datetime) -> Job | None:
        """End the current run of a queued or running job as ``cancelled``; None when unknown.

        Raises:
            WrongState: the job already ended.
        """
        ...

    def part_update_times(self, job_id: str) -> list[datetime]:
        """When each stored part of the job was written (the reaper's signs of life)."""
        ...

    def count_by(self, filters: dict[str, str]) -> int:
        """How many jobs match every ``field == value`` of ``filters``."""
        ...

    def statuses(self, job_ids: list[str]) -> list[str | None]:
        """The status of each job, None for an unknown one."""
        ...

    def source_state(self, name: str) -> SourceState:
        """What is known of a source, for incremental planning."""
        ...

    def source_states(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """Watermark, cursors, last status and last success of each named source."""
        ...

    def create_batch(self, batch_id: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        """Write the batch unless it exists: None when written, else the stored document."""
        ...

    def put_batch(self, batch_id: str, doc: dict[str, Any]) -> None:
        """Replace the batch document."""
        ...

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        """The batch document, or None."""
        ...

    def job_events(self, job_id: str) -> list[dict[str, Any]]:
        """The job's event markers (``Event.marker``), oldest first (at most :data:`MAX_TIMELINE`), each with its
        ``id`` and ``time`` as a datetime."""
        ...

    def job_run(self, source: str, job_id: str) -> dict[str, Any] | None:
        """The job's run record (what its decided outcome left on its source), or None."""
        ...

    def recent_batches(self, limit: int) -> list[dict[str, Any]]:
        """The newest batch documents first, each with its ``batch_id``."""
        ...

    def record_load(self, job_id: str, key: str, report: dict[str, Any]) -> dict[str, Any]:
        """Store one load report of the job (per part, or ``job``); the job's ``load`` is then their sum. Returns
        the sum as this call knows it: SQLite reads the others back in its transaction, Firestore (one write,
        nothing read) returns this report's, and sums them when the job is read.

        Raises:
            common.core.errors.TransientError: the job is not recorded yet.
        """
        ...

    def record_dead_letter(
        self, message_id: str, raw: bytes, reason: str, attributes: dict[str, str] | None = None
    ) -> None:
        """Keep an unreadable event (idempotent per message id)."""
        ...

    def dead_letters(self, limit: int) -> list[StoredLetter]:
        """Up to ``limit`` kept events."""
        ...

    def delete_dead_letter(self, letter_id: str) -> None:
        """Forget a kept event (it applied)."""
        ...
