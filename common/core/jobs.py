"""The job model and its state machine: ``queued → running → succeeded | failed | cancelled``, monotonic,
order-independent, per run (a retry is a new run of the same job)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, Field

from common.core.events import Event, EventData, EventType


class JobStatus(StrEnum):
    """Where a job is. ``succeeded``, ``failed`` and ``cancelled`` are terminal: no event moves a job out of them
    (only a retry, :func:`new_run`, starts a failed or cancelled job again, as a new run)."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)

    @property
    def retryable(self) -> bool:
        """Whether a retry may run the job again: it failed or was cancelled."""
        return self in (JobStatus.failed, JobStatus.cancelled)


class JobError(BaseModel):
    """Why a job (or its last attempt) failed."""

    kind: str
    type: str = "IngestError"
    message: str


class Progress(BaseModel):
    """Parts done out of parts planned, for jobs split into several parts."""

    done: int = 0
    total: int = 0


class JobRun(BaseModel):
    """One run of a job, as its history shows it: the first, then one more per retry."""

    run: int
    status: JobStatus
    attempt: int = 0
    records: int = 0
    error: JobError | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


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
    #: The :func:`outcome_key` of the event that decided the status and error (internal, not answered).
    decided_by: str | None = None
    #: What the load stage did with the outputs (common.runtime.load): status, rows, bytes, tables.
    load: dict[str, Any] | None = None
    #: What the ingest measured for the deciding attempt (CPU seconds, wall seconds, peak RSS bytes): the
    #: compute of the job's cost (common.core.cost), the rest of which is counted from the fields above.
    usage: dict[str, float] | None = None
    #: The current run: 1, then one more per retry. Events of another run never change the job.
    run: int = 1
    #: Every run, oldest first. Stored: the earlier runs; answered (:meth:`public`): the current one too.
    runs: list[JobRun] = Field(default_factory=list)

    def current_run(self) -> JobRun:
        """The current run's summary."""
        return JobRun(
            run=self.run,
            status=self.status,
            attempt=self.attempt,
            records=self.records,
            error=self.error,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )

    def public(self) -> dict[str, Any]:
        """The JSON the API answers with: ``runs`` lists every run, the current one last."""
        out = self.model_dump(mode="json", exclude={"decided_by"})
        out["runs"] = [*out["runs"], self.current_run().model_dump(mode="json")]
        return out


#: What job and batch ids look like (task-safe). Anything else names nothing, and Firestore refuses ids
#: like "__x__" with an error rather than "not found" (docs/google-quirks.md).
ID_RE = re.compile(r"^(?!__.*__$)[A-Za-z0-9_-]{1,200}$")


def summed_usage(usages: Iterable[dict[str, float] | None]) -> dict[str, float] | None:
    """The parts' measured usage as one: seconds added, the largest peak memory; None without any."""
    known = [u for u in usages if u]
    if not known:
        return None
    out: dict[str, float] = {}
    for u in known:
        for key, value in u.items():
            out[key] = max(out.get(key, 0.0), value) if key == "peak_rss_bytes" else out.get(key, 0.0) + value
    return out


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


#: How a job's outcome is chosen among conflicting events of one run: a cancel beats everything (the operator's
#: stop is final for the run), a success beats a failure, a failure beats an error reported while retrying; within
#: one kind the higher attempt, then the later time, then the larger event id.
_RANK = {EventType.cancelled: 3, EventType.succeeded: 2, EventType.failed: 1, EventType.retrying: 0}


#: The error of a cancelled run.
CANCELLED = JobError(kind="permanent", type="Cancelled", message="cancelled by request")


def outcome_key(event: Event) -> str:
    """The sortable rank of ``event`` as the decider of a job's outcome (see :func:`apply_event`)."""
    when = event.time.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%f")
    return f"{_RANK.get(event.type, 0)}|{event.data.attempt:09d}|{when}|{event.id}"


def _current_key(job: Job) -> str:
    """The key of what decided ``job`` so far; jobs stored before keys existed rank lowest within their kind."""
    if job.decided_by is not None:
        return job.decided_by
    return {JobStatus.cancelled: "3|", JobStatus.succeeded: "2|", JobStatus.failed: "1|"}.get(job.status, "")


def apply_event(job: Job, event: Event) -> Job | None:
    """The job after ``event``, or None when the event changes nothing (duplicate, or already accounted for).

    Every field is a join over the events seen, so any delivery order of the same events gives the same job
    (tests/unit/test_jobs.py checks every permutation; docs/design.md states the rule):

    - an event of another run than the job's (``event.data.run != job.run``) changes nothing: a retry starts a
      new run (:func:`new_run`), and a late event of an older run never touches it;
    - status only moves forward: ``queued → running → succeeded | failed | cancelled``;
    - a ``cancelled`` event beats every other outcome of its run: whatever arrives later, the job stays
      cancelled, with the error :data:`CANCELLED` and no records or outputs (parts that landed before the stop
      stay in storage, not on the job: counting them would depend on the order) and no progress;
    - conflicting terminal events: a success beats a failure (whatever the attempts: its outputs exist);
      between two of a kind the higher attempt wins, then the later time, then the larger event id. Records,
      bytes, outputs, the error and ``finished_at`` come from the winning event (:func:`outcome_key`);
    - while running, the error shown is the one of the highest-ranked ``retrying`` event;
    - ``attempt``, ``updated_at`` and ``progress`` take the maximum seen, ``started_at`` the earliest time;
      a succeeded job's progress is complete.
    """
    data = event.data
    if data.run != job.run:
        return None
    new = job.model_copy()  # shallow: below, fields are replaced, never changed in place (``job`` stays as it was)
    new.attempt = max(job.attempt, data.attempt)
    new.updated_at = max(job.updated_at, event.time)
    if event.type is not EventType.cancelled:  # a cancel is no sign that the job started
        new.started_at = event.time if job.started_at is None else min(job.started_at, event.time)
    if data.progress is not None:
        done = max(data.progress.done, job.progress.done if job.progress else 0)
        total = max(data.progress.total, job.progress.total if job.progress else 0)
        new.progress = Progress(done=done, total=total)
    if new.status is JobStatus.queued and event.type is not EventType.cancelled:
        new.status = JobStatus.running
    key = outcome_key(event)
    match event.type:
        case EventType.cancelled if key > _current_key(job):
            new.decided_by, new.status, new.finished_at = key, JobStatus.cancelled, event.time
            new.records, new.bytes, new.outputs, new.error = 0, 0, [], CANCELLED
        case EventType.retrying if data.error is not None and not job.status.terminal and key > _current_key(job):
            new.decided_by, new.error = key, JobError(**data.error)
        case EventType.succeeded if key > _current_key(job):
            new.decided_by, new.status, new.finished_at = key, JobStatus.succeeded, event.time
            new.records, new.bytes, new.outputs = data.records, data.bytes, list(data.outputs)
            new.error, new.usage = None, data.usage
        case EventType.failed if key > _current_key(job):
            new.decided_by, new.status, new.finished_at = key, JobStatus.failed, event.time
            new.error = JobError(**(data.error or {"kind": "permanent", "message": "failed"}))
            new.usage = data.usage
    if new.status is JobStatus.succeeded and new.progress is not None:
        new.progress = Progress(done=new.progress.total, total=new.progress.total)
    if new.status is JobStatus.cancelled:
        new.progress = None  # what it was when the stop came depends on the order; a stopped run has none
    return None if new == job else new


def new_run(job: Job, now: datetime) -> Job:
    """``job`` run again (a retry): its current run joins the history, and a new run starts ``queued``.

    Raises:
        ValueError: the job is neither failed nor cancelled (only those may run again).
    """
    if not job.status.retryable:
        raise ValueError(f"job {job.job_id} is {job.status.value}; only a failed or cancelled job can be retried")
    return job.model_copy(
        update={
            "runs": [*job.runs, job.current_run()],
            "run": job.run + 1,
            "status": JobStatus.queued,
            "attempt": 0,
            "records": 0,
            "bytes": 0,
            "outputs": [],
            "error": None,
            "progress": None,
            "started_at": None,
            "finished_at": None,
            "decided_by": None,
            "load": None,
            "usage": None,
            "updated_at": max(now, job.updated_at),
        },
        deep=True,
    )


def cancel_event(job: Job, now: datetime) -> Event:
    """The event that cancels the job's current run (one id per run, so a repeated cancel collapses)."""
    data = EventData(job_id=job.job_id, source=job.source, attempt=0, run=job.run)
    return Event.make(EventType.cancelled, data, seq="api").model_copy(update={"time": now})


def awaits_parts(job: Job) -> bool:
    """Whether the job's stored parts may still finish it: a multi-part job not succeeded and not cancelled (a
    failed one too, since a success beats a failure; a cancel beats both)."""
    return job.progress is not None and job.status not in (JobStatus.succeeded, JobStatus.cancelled)


def parts_succeeded(job: Job, parts: Sequence[Mapping[str, Any]]) -> Event:
    """The ``succeeded`` event of the job's run from its stored parts (each a progress event's data): records,
    bytes and usage summed, outputs merged, the latest watermark and cursors. Its id is the run's ``parts`` one,
    so finishing twice is one event."""
    watermarks = [p["watermark"] for p in parts if p.get("watermark")]
    cursors: dict[str, str] = {}
    for p in parts:
        for key, value in (p.get("cursors") or {}).items():
            cursors[key] = max(value, cursors.get(key, value))
    data = EventData(
        job_id=job.job_id,
        source=job.source,
        run=job.run,
        attempt=max((p.get("attempt", 1) for p in parts), default=1),
        records=sum(p.get("records", 0) for p in parts),
        bytes=sum(p.get("bytes", 0) for p in parts),
        outputs=sorted({o for p in parts for o in p.get("outputs", [])}),
        watermark=max(watermarks) if watermarks else None,
        cursors=cursors,
        usage=summed_usage(p.get("usage") for p in parts),
    )
    return Event.make(EventType.succeeded, data, seq="parts")
