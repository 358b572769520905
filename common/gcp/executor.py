"""The Google adapters of the runtime's ports: Cloud Tasks dispatch, Pub/Sub events, Firestore state.

Each wraps the existing module and calls it through its module attribute (``firestore.list_jobs``), so the
modules stay the one place that talks to Google and a test that replaces one of their functions still
reaches it. ``common.runtime.executors`` builds these when the settings choose ``gcp``.
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from common.core.events import Event
from common.core.jobs import Job
from common.core.ports import QueueAction, QueueState, StoredLetter
from common.core.source_state import SourceState
from common.core.tasks import QueueConfig, TaskPayload
from common.gcp import firestore, names, pubsub, tasks
from common.gcp.firestore import batches, deadletters, loads, reads, runs
from common.gcp.firestore import jobs as jobs_repo

__all__ = ["CloudTasksDispatcher", "FirestoreState", "PubSubBus"]


def _target(source: str, queue: QueueConfig) -> Any:
    """What the Cloud Tasks module reads of a source: its name and queue settings."""
    return cast(Any, SimpleNamespace(name=source, queue=queue))


class CloudTasksDispatcher:
    """One Cloud Tasks queue per source; the task's name is its ``task_id``, so the queue refuses duplicates."""

    name = "cloudtasks"

    def enqueue(self, payload: TaskPayload, queue: QueueConfig, *, schedule_time: datetime | None = None) -> bool:
        """Create the task (False: a task of that name exists).

        Raises:
            google.api_core.exceptions.GoogleAPICallError: the queue refused it for another reason.
        """
        return tasks.enqueue(payload, _target(payload.source, queue), schedule_time=schedule_time)

    def enqueue_many(self, payloads: list[TaskPayload], queue: QueueConfig) -> tuple[int, int]:
        """Create many tasks of one source concurrently; ``(created, duplicates)``.

        Raises:
            google.api_core.exceptions.GoogleAPICallError: the first refusal other than a duplicate.
        """
        if not payloads:
            return 0, 0
        return tasks.enqueue_many(payloads, _target(payloads[0].source, queue))

    def delete_job_tasks(self, job_id: str, source: str) -> int:
        """Delete the job's tasks still in its queue.

        Raises:
            google.api_core.exceptions.GoogleAPICallError: the queue could not be listed or refused.
        """
        return tasks.delete_job_tasks(job_id, _target(source, QueueConfig()))

    def queue_states(self, sources: list[str]) -> list[QueueState]:
        """One ``GetQueue`` per source.

        Raises:
            google.api_core.exceptions.GoogleAPICallError: Cloud Tasks could not answer.
        """
        return tasks.queue_states(sources)

    def set_queue_state(self, source: str, action: QueueAction) -> QueueState | None:
        """Cloud Tasks' own pause, resume and purge.

        Raises:
            google.api_core.exceptions.GoogleAPICallError: Cloud Tasks refused.
        """
        return tasks.set_queue_state(source, action)

    def pending(self, source: str) -> list[str]:
        """The ids of the tasks in the source's queue."""
        listed = tasks.task_names(_target(source, QueueConfig()))
        prefix = names.task_path(source, "")
        return [n[len(prefix) :] if n.startswith(prefix) else n.rsplit("/", 1)[-1] for n in listed]


class PubSubBus:
    """The ``ingest-events`` topic, the job id as ordering key; the status function applies what it pushes."""

    name = "pubsub"

    def publish(self, event: Event) -> str:
        """Publish and wait for the server's ack.

        Raises:
            common.core.errors.TransientError: Pub/Sub did not accept it.
        """
        return pubsub.publish(event)


class FirestoreState:
    """The Firestore repositories (``common.gcp.firestore``) behind the state port."""

    name = "firestore"

    def create_job(self, job: Job) -> tuple[Job, bool]:
        return firestore.create_job(job)

    def get_job(self, job_id: str, *, with_progress: bool = True) -> Job | None:
        return firestore.get_job(job_id, with_progress=with_progress)

    def list_jobs(
        self, *, source: str | None = None, status: str | None = None, batch_id: str | None = None, limit: int = 50
    ) -> list[Job]:
        return firestore.list_jobs(source=source, status=status, batch_id=batch_id, limit=limit)

    def record_event(self, event: Event) -> Job | None:
        return jobs_repo.record_event(event)

    def finish_if_complete(self, job_id: str) -> Job | None:
        return jobs_repo.finish_if_complete(job_id)

    def count_parts(self, job_id: str, run: int = 1) -> int:
        return jobs_repo.count_parts(job_id, run)

    def retry_job(self, job_id: str, now: datetime) -> Job | None:
        return runs.retry_job(job_id, now)

    def cancel_job(self, job_id: str, now: datetime) -> Job | None:
        return runs.cancel_job(job_id, now)

    def part_update_times(self, job_id: str) -> list[datetime]:
        return jobs_repo.part_update_times(job_id)

    def count_by(self, filters: dict[str, str]) -> int:
        return jobs_repo.count_by(filters)

    def statuses(self, job_ids: list[str]) -> list[str | None]:
        return jobs_repo.statuses(job_ids)

    def source_state(self, name: str) -> SourceState:
        return firestore.source_state(name)

    def source_states(self, names: list[str]) -> dict[str, dict[str, Any]]:
        return firestore.source_states(names)

    def create_batch(self, batch_id: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        return batches.create(batch_id, doc)

    def put_batch(self, batch_id: str, doc: dict[str, Any]) -> None:
        batches.put(batch_id, doc)

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        return batches.get(batch_id)

    def job_events(self, job_id: str) -> list[dict[str, Any]]:
        return reads.job_events(job_id)

    def job_run(self, source: str, job_id: str) -> dict[str, Any] | None:
        return reads.job_run(source, job_id)

    def recent_batches(self, limit: int) -> list[dict[str, Any]]:
        return reads.recent_batches(limit)

    def record_load(self, job_id: str, key: str, report: dict[str, Any]) -> dict[str, Any]:
        return loads.record_load(job_id, key, report)

    def record_dead_letter(
        self, message_id: str, raw: bytes, reason: str, attributes: dict[str, str] | None = None
    ) -> None:
        deadletters.record(message_id, raw, reason, attributes)

    def dead_letters(self, limit: int) -> list[StoredLetter]:
        return deadletters.stored(limit)

    def delete_dead_letter(self, letter_id: str) -> None:
        deadletters.delete(letter_id)


def dispatcher(_settings: Any) -> CloudTasksDispatcher:
    """The Cloud Tasks dispatcher (its client reads the settings when first used)."""
    return CloudTasksDispatcher()


def events(_settings: Any, _consumer: Any) -> PubSubBus:
    """The Pub/Sub bus: the status function, pushed to by the subscription, is its consumer."""
    return PubSubBus()


def state(_settings: Any) -> FirestoreState:
    """The Firestore state."""
    return FirestoreState()
