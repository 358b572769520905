"""The job model and its state machine: ``queued → running → succeeded | failed``, monotonic, terminal final."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, Field

from common.core.events import Event, EventType


class JobStatus(StrEnum):
    """Where a job is. ``succeeded`` and ``failed`` are terminal: nothing moves a job out of them."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed)


class JobError(BaseModel):
    """Why a job (or its last attempt) failed."""

    kind: str
    type: str = "IngestError"
    message: str


class Progress(BaseModel):
    """Parts done out of parts planned, for jobs split into several parts."""

    done: int = 0
    total: int = 0


class Job(BaseModel):
    """One ingestion of one source over one window (params). Stored at ``jobs/{job_id}``."""

    job_id: str
    source: str
    params: dict[str, Any] = Field(default_factory=dict)
    status: JobStatus = JobStatus.queued
    attempt: int = 0
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    finished_at: datetime | None = None
    records: int = 0
    bytes: int = 0
    outputs: list[str] = Field(default_factory=list)
    error: JobError | None = None
    progress: Progress | None = None
    batch_id: str | None = None
    trigger: str = "api"
    #: What the load stage did with the outputs (common.runtime.load): status, rows, bytes, tables.
    load: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        """The JSON the API answers with."""
        return self.model_dump(mode="json")


#: What job and batch ids look like (task-safe). Anything else names nothing, and Firestore refuses ids
#: like "__x__" with an error rather than "not found" (docs/google-quirks.md).
ID_RE = re.compile(r"^(?!__.*__$)[A-Za-z0-9_-]{1,200}$")


def is_valid_id(value: str) -> bool:
    return bool(ID_RE.match(value))


def canonical_json(value: Any) -> bytes:
    """Key-sorted compact JSON, so equal params always hash the same."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def job_id_for(source: str, params: dict[str, Any], idempotency_key: str | None = None) -> str:
    """The deterministic id of a job: the same source and params (or key) always give the same id.

    The id is also a valid Cloud Tasks task id (``[A-Za-z0-9_-]``), so the task is deduplicated too.
    """
    basis = idempotency_key if idempotency_key else canonical_json(params).decode()
    digest = hashlib.sha256(f"{source}\x00{basis}".encode()).hexdigest()[:24]
    return f"{source}-{digest}"


def apply_event(job: Job, event: Event) -> Job | None:
    """The job after ``event``, or None when the event changes nothing (stale, duplicate or late).

    Rules, which make delivery order irrelevant to the outcome:
    - a terminal job never changes (the first terminal event wins);
    - ``started``, ``progress`` and ``retrying`` move a queued job to running and never go back;
    - counters only grow: ``attempt`` and ``progress.done`` take the maximum seen.
    """
    early = event.type in (EventType.started, EventType.progress, EventType.retrying)
    if job.status.terminal:
        # A late event (Pub/Sub reorders) may still tell when the job really began; nothing else moves.
        if early and job.started_at and event.time < job.started_at:
            return job.model_copy(update={"started_at": event.time})
        return None
    data = event.data
    new = job.model_copy(deep=True)
    new.attempt = max(job.attempt, data.attempt)
    new.updated_at = max(job.updated_at, event.time)
    if early and (new.started_at is None or event.time < new.started_at):
        new.started_at = event.time
    match event.type:
        case EventType.started | EventType.progress | EventType.retrying:
            new.status = JobStatus.running
            if data.progress is not None:
                done = max(data.progress.done, job.progress.done if job.progress else 0)
                total = max(data.progress.total, job.progress.total if job.progress else 0)
                new.progress = Progress(done=done, total=total)
            if event.type is EventType.retrying and data.error is not None:
                new.error = JobError(**data.error)
        case EventType.succeeded:
            new.status = JobStatus.succeeded
            new.records, new.bytes, new.outputs = data.records, data.bytes, list(data.outputs)
            new.error = None
            if new.progress is not None:
                new.progress.done = new.progress.total
        case EventType.failed:
            new.status = JobStatus.failed
            new.error = JobError(**(data.error or {"kind": "permanent", "message": "failed"}))
    if new.started_at is None and new.status is not JobStatus.queued:
        new.started_at = event.time
    if new.status.terminal:
        new.finished_at = event.time
    return None if new == job else new
