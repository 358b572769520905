"""What the API takes and answers: its limits, routes, error, and request and response models."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from common.core.inputs import AsciiInt, Bound, IsoDay, StrictBool, TextBool, parse_bound
from common.core.jobs import ID_RE, Job, JobStatus

#: The largest request body read; a longer one is refused with 413.
MAX_BODY = 64 * 1024
#: The most jobs one ``GET /v1/jobs`` answers with.
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
#: The longest ``Idempotency-Key``.
MAX_KEY = 255
#: A job or batch id in a path. functions-framework's catch-all route does not match a path with a newline
#: in it, so Flask itself would answer such a request with an HTML 404 (docs/google-quirks.md).
ID_SCHEMA: dict[str, Any] = {"type": "string", "pattern": ID_RE.pattern}

Response = tuple[dict[str, Any] | list[Any], int, dict[str, str]]
Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    """One operation: the router is built from these, and so is the OpenAPI document.

    ``rule`` is a werkzeug rule; its ``<name>`` parts are ids (:data:`ID_SCHEMA`). ``body``, ``query`` and
    ``headers`` are the models of what the request carries; ``response`` the model of the success answer
    (None: any JSON object), answered with ``status``; ``errors`` the statuses of its :class:`Error` answers.
    """

    method: str
    rule: str
    handler: Handler
    summary: str
    status: int = 200
    response: type[BaseModel] | None = None
    description: str = "JSON"
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    headers: type[BaseModel] | None = None
    #: Other success answers: (status, model, description), e.g. a dry run's plan.
    also: tuple[tuple[int, type[BaseModel], str], ...] = ()


class ApiError(Exception):
    """An answer other than success: status, machine code, readable message, the field at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            err["field"] = self.field
        return {"error": err}


class Answer(BaseModel):
    """A model of what the API answers: only the OpenAPI document reads it, so it is built on first use."""

    model_config = ConfigDict(defer_build=True)


class ErrorDetail(Answer):
    code: str = Field(description="machine-readable code, e.g. invalid_params")
    message: str = Field(description="what is wrong, for a person")
    field: str | None = Field(None, description="the part of the request at fault, e.g. params.slot")


class Error(Answer):
    """The body of every answer that is not a success."""

    model_config = ConfigDict(title="Error", defer_build=True)
    error: ErrorDetail


# ---- requests ------------------------------------------------------------------------------------
# Every parameter is parsed here, by pydantic, never by hand (common.core.inputs says why).
class Request(BaseModel):
    """A model of what a request carries: its validator is built when a request first needs it (a cold
    instance answers its first request with only that route's model built; all six cost ~8 ms at import)."""

    model_config = ConfigDict(defer_build=True)


class JobRequest(Request):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)


class JobHeaders(Request):
    idempotency_key: str | None = Field(None, alias="Idempotency-Key", min_length=1, max_length=MAX_KEY)


class JobQuery(Request):
    """The filters of ``GET /v1/jobs``; any other query parameter is refused."""

    model_config = ConfigDict(extra="forbid")
    source: str | None = Field(None, min_length=1, max_length=64)
    status: JobStatus | None = None
    batch_id: str | None = Field(None, min_length=1, max_length=MAX_KEY)
    limit: AsciiInt = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


class BackfillRequest(Request):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=64)
    start: Bound = Field(description="ISO date (whole day) or datetime, UTC; not before the source's earliest data")
    end: Bound = Field(description="ISO date (included) or datetime (excluded), UTC; not after today")
    params: dict[str, Any] = Field(default_factory=dict)
    dry_run: StrictBool = Field(False, description="answer the plan (jobs, queue rate, duration); create nothing")
    confirm: StrictBool = Field(False, description="create a backfill larger than the confirmation threshold")

    def range(self) -> tuple[datetime, datetime]:
        """``[start, end)`` as UTC moments (validated already, so this does not raise)."""
        return parse_bound(self.start, end=False), parse_bound(self.end, end=True)


class RunDailyRequest(Request):
    model_config = ConfigDict(extra="forbid")
    date: IsoDay | None = Field(None, description="the day, YYYY-MM-DD (default: today, UTC); not after tomorrow")
    sources: list[str] | None = Field(None, max_length=64, description="source names; a repeated name counts once")

    @field_validator("sources")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        return list(dict.fromkeys(value)) if value is not None else None


class ReaperQuery(Request):
    model_config = ConfigDict(extra="forbid")
    dry_run: TextBool = Field(False, description="report what would be done, do nothing")


# ---- responses -----------------------------------------------------------------------------------
class JobOut(Job):
    """A job, with what it cost (``common.core.cost``; docs/cost.md)."""

    model_config = ConfigDict(defer_build=True)

    cost: dict[str, Any] | None = Field(
        None, description="usage by kind (counted from what the job did, compute measured) priced at list prices"
    )


class JobList(Answer):
    jobs: list[Job]


class BatchCounts(Answer):
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int = 0


class BatchOut(Answer):
    batch_id: str
    kind: str
    source: str | None = None
    start: str | None = None
    end: str | None = None
    params: dict[str, Any] = {}
    total: int
    created: int
    reused: int
    created_at: str
    status: str
    counts: BatchCounts
    done: int


class BackfillPlan(Answer):
    """What a backfill would do (``dry_run``): nothing is created."""

    dry_run: bool = True
    source: str
    start: str
    end: str
    jobs: int = Field(description="the child jobs it would make (distinct)")
    max_dispatches_per_second: float = Field(description="the source's queue rate")
    max_concurrent_dispatches: int = Field(description="the source's queue concurrency")
    estimated_seconds: float = Field(description="at least jobs / rate: how long the queue needs to dispatch them")
    confirmation_required: bool = Field(description="whether creating it needs confirm: true")
    max_unconfirmed_jobs: int
    max_unconfirmed_seconds: float


class RunDailyOut(BatchOut):
    job_id: str = Field(description="the batch id, to poll at /api/v1/ingest/jobs/{job_id}")
    jobs: list[str] = Field(description="the ids of the jobs submitted")


class BatchJobs(BatchOut):
    job_id: str = Field(description="the batch id")
    jobs: list[Job]


class BatchOrJob(RootModel[BatchJobs | Job]):
    """A batch with its jobs, or a single job."""

    model_config = ConfigDict(defer_build=True)


class SourceOut(Answer):
    name: str
    description: str
    schedule: dict[str, Any]
    queue: dict[str, Any]
    secrets: list[str]
    streams: list[str]
    params_schema: dict[str, Any] = Field(description="the JSON Schema of the source's params")
    last_status: str | None = None
    last_success_at: Any = None
    last_job_id: str | None = None
    watermark: Any = None


class SourceList(Answer):
    sources: list[SourceOut]


class Reaped(Answer):
    job_id: str
    action: str = Field(description="failed, re-enqueued or kept")
    reason: str


class ReaperRun(Answer):
    reaped: list[Reaped]


class Health(Answer):
    ok: bool


class QueueOut(Answer):
    source: str
    queue: str = Field(description="the Cloud Tasks queue's full name")
    state: str = Field(description="RUNNING, PAUSED, DISABLED, or MISSING (the source has no queue)")
    max_dispatches_per_second: float
    max_concurrent_dispatches: int


class QueueList(Answer):
    queues: list[QueueOut]
