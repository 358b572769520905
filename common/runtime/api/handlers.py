"""The API's handlers: each takes the request's query, headers, body and path ids and answers a Response.

Every bad request raises :class:`ApiError` (4xx) and creates nothing.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, ValidationError

from common.core.errors import BadParams
from common.core.jobs import Job, JobStatus, job_id_for
from common.core.ports import WrongState
from common.core.tasks import TaskPayload
from common.runtime import batches, executors, reaper
from common.runtime.api.models import (
    MAX_BODY,
    MAX_LIMIT,
    ApiError,
    JobHeaders,
    JobQuery,
    JobRequest,
    ReaperQuery,
    Response,
    RunDailyRequest,
)
from common.runtime.api.operations import rerun
from common.sources import all_sources, get_source

if TYPE_CHECKING:  # pragma: no cover (a type only: the contract loads with a source's module, never at cold start)
    from common.sources.base import Source

log = logging.getLogger("tributary.api")

M = TypeVar("M", bound=BaseModel)
#: The first day run-daily accepts (its latest is tomorrow, UTC: a day ahead of n8n's time zone at most).
RUN_DAILY_FIRST = date(1970, 1, 1)


def _json_body(body: bytes, headers: dict[str, str]) -> Any:
    if len(body) > MAX_BODY:
        raise ApiError(413, "body_too_large", f"request body is {len(body):,} bytes; the limit is {MAX_BODY:,}")
    ctype = headers.get("content-type", "application/json")
    if "json" not in ctype:
        raise ApiError(415, "unsupported_media_type", f"Content-Type must be application/json, not {ctype!r}")
    if not body.strip():
        raise ApiError(400, "invalid_json", "request body is empty; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc


def parse_body(
    model: type[M],
    body: bytes,
    headers: dict[str, str],
    *,
    optional: bool = False,
    codes: dict[str, str] | None = None,
) -> M:
    """The request body as ``model``: a JSON object, validated.

    Raises:
        ApiError: 4xx naming what is wrong (the field, for a validation error).
    """
    data = _json_body(body, headers) if body.strip() or not optional else {}
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "request body must be a JSON object", field="body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation(exc, codes) from None


def _validation(
    exc: ValidationError, codes: dict[str, str] | None = None, default: str = "invalid_request"
) -> ApiError:
    """The first error of ``exc`` as a 400 naming its field; ``codes`` gives some fields a code of their own."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "body"
    if err["type"] == "extra_forbidden" and default != "invalid_request":
        return ApiError(400, "unknown_parameter", f"unknown parameter {where!r}", field=where)
    code = (codes or {}).get(where) or (codes or {}).get(err["type"]) or default
    return ApiError(400, code, f"{where}: {err['msg']}", field=where)


def parse_query(model: type[M], query: dict[str, str], codes: dict[str, str] | None = None) -> M:
    """The query string as ``model`` (every value parsed by it; unknown parameters refused).

    Raises:
        ApiError: 400 naming the parameter at fault.
    """
    try:
        return model.model_validate(query)
    except ValidationError as exc:
        raise _validation(exc, codes, default="invalid_parameter") from None


def parse_headers(model: type[M], headers: dict[str, str]) -> M:
    """The headers ``model`` names (by alias, any case), parsed by it.

    Raises:
        ApiError: 400 invalid_header naming the header.
    """
    wanted = {}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        if alias.lower() in headers:
            wanted[alias] = headers[alias.lower()]
    try:
        return model.model_validate(wanted)
    except ValidationError as exc:
        raise _validation(exc, default="invalid_header") from None


def source_named(name: str, field: str = "source") -> Source:
    try:
        return get_source(name)
    except KeyError as exc:
        raise ApiError(400, "unknown_source", str(exc.args[0]), field=field) from None


def submit(
    source_name: str,
    raw_params: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    trigger: str = "api",
    batch_id: str | None = None,
    now: datetime | None = None,
) -> tuple[Job, bool]:
    """Create (or find) the job for these params, write it ``queued``, then enqueue its task.

    The job is written before the task, so a GET straight after finds it; a job found ``queued``
    is enqueued again (the task name makes that a no-op when the first enqueue went through). A job found
    ``failed`` runs again, as a new run (what ``POST /v1/jobs/{id}:retry`` does); a succeeded, running or
    cancelled one is answered as it is (a cancel is undone only by an explicit retry).

    Raises:
        ApiError: unknown source or invalid params (400), or Cloud Tasks refused the task (503).
    """
    source = source_named(source_name)
    try:
        params = source.validate_params(raw_params)
    except BadParams as exc:
        raise ApiError(400, "invalid_params", exc.message, field=exc.field) from None
    now = now or datetime.now(UTC)
    job_id = job_id_for(source.name, source.dedup_params(params, now), idempotency_key)
    stored_params = params.model_dump(mode="json", exclude_none=True)
    job, created = executors.state().create_job(
        Job(job_id=job_id, source=source.name, params=stored_params, trigger=trigger, batch_id=batch_id)
    )
    log.info(
        "submitted job %s (%s, %s by %s)",
        job_id,
        source.name,
        "new" if created else f"existing, {job.status.value}",
        trigger,
    )
    if job.status is JobStatus.failed:
        try:
            job = rerun(job_id) or job
        except WrongState as exc:  # another caller ran it again first: answer the job as that left it
            return exc.job, created
        return job, created
    if job.status is JobStatus.queued:
        try:
            payload = TaskPayload(job_id=job_id, source=source.name, params=job.params, run=job.run)
            executors.dispatcher(source.name).enqueue(payload, source.queue)
        except Exception as exc:  # the job stays queued; a retried POST enqueues it again
            log.exception("enqueue of %s failed", job_id)
            raise ApiError(
                503,
                "queue_unavailable",
                f"job {job_id} is saved but could not be queued yet: {exc}; submit it again to retry",
            ) from exc
    return job, created


def submit_job(*, query: dict[str, str], headers: dict[str, str], body: bytes) -> Response:
    req = parse_body(JobRequest, body, headers)
    key = parse_headers(JobHeaders, headers).idempotency_key
    job, created = submit(req.source, req.params, idempotency_key=key)
    extra = {"Location": f"/v1/jobs/{job.job_id}"}
    if not created:
        extra["Idempotent-Replayed"] = "true"
    return job.public(), 202, extra


def get_job(*, job_id: str, **_: Any) -> Response:
    job = executors.state().get_job(job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id!r}", field="job_id")
    from common.core.cost import priced  # only this answer prices a job: the api's cold start skips the model

    return priced(job), 200, {}


def list_jobs(*, query: dict[str, str], **_: Any) -> Response:
    q = parse_query(JobQuery, query, {"limit": "invalid_limit", "status": "invalid_status"})
    if q.source is not None:
        source_named(q.source)
    status = q.status.value if q.status is not None else None
    jobs = executors.state().list_jobs(source=q.source, status=status, batch_id=q.batch_id, limit=q.limit)
    return {"jobs": [j.public() for j in jobs]}, 200, {}


def describe_sources() -> list[dict[str, Any]]:
    """Every source with its schedule, queue, params schema and recorded state."""
    states = executors.state().source_states([s.name for s in all_sources()])
    out = []
    for s in all_sources():
        state = states.get(s.name, {})
        out.append(
            {
                "name": s.name,
                "description": s.description,
                "schedule": asdict(s.schedule),
                "queue": asdict(s.queue),
                "secrets": list(s.secrets),
                "streams": sorted(s.schemas),
                "params_schema": s.params_model.model_json_schema(),
                "last_status": state.get("last_status"),
                "last_success_at": state.get("last_success_at"),
                "last_job_id": state.get("last_job_id"),
                "watermark": state.get("watermark"),
            }
        )
    return out


def list_sources(**_: Any) -> Response:
    return {"sources": describe_sources()}, 200, {}


def health(**_: Any) -> Response:
    return {"ok": True}, 200, {}


def get_backfill(*, batch_id: str, **_: Any) -> Response:
    batch = batches.load(batch_id)
    if batch is None:
        raise ApiError(404, "batch_not_found", f"no backfill {batch_id!r}", field="batch_id")
    return batches.describe(batch), 200, {}


def due_on(source: Source, day: date) -> bool:
    """Whether the source's cron fires at least once on ``day`` in its own time zone."""
    from croniter import croniter  # 30 ms, for run-daily only

    zone = ZoneInfo(source.schedule.time_zone)
    start = datetime.combine(day, datetime.min.time(), tzinfo=zone)
    first = croniter(source.schedule.cron, start - timedelta(seconds=1)).get_next(datetime)
    return bool(first < start + timedelta(days=1))


def run_daily(*, query: dict[str, str], headers: dict[str, str], body: bytes) -> Response:
    """Enqueue every source due on the day; the answer's ``job_id`` is the batch's, for polling."""
    req = parse_body(RunDailyRequest, body, headers, optional=True, codes={"date": "invalid_date"})
    today = datetime.now(UTC).date()
    day = req.date or today
    if not RUN_DAILY_FIRST <= day <= today + timedelta(days=1):
        raise ApiError(
            400,
            "invalid_date",
            f"date must be from {RUN_DAILY_FIRST} to tomorrow ({today + timedelta(days=1)})",
            field="date",
        )
    chosen = [source_named(n, field="sources") for n in req.sources] if req.sources else list(all_sources())
    due = [s for s in chosen if due_on(s, day)]
    batch_id = f"run-daily-{day.strftime('%Y%m%d')}" + (
        f"-{batches.batch_id_for('s', req.sources)}" if req.sources else ""
    )
    batch = batches.Batch(batch_id=batch_id, kind="run-daily", start=day.isoformat(), end=day.isoformat())
    jobs = []
    for source in due:
        job, new = submit(
            source.name,
            dict(source.daily_params),
            idempotency_key=f"{batch_id}-{source.name}",
            trigger="run-daily",
            batch_id=batch_id,
        )
        jobs.append(job)
        batch.created += int(new)
    batch.total = len({j.job_id for j in jobs})  # the sources are distinct, so are their jobs
    batch.reused_ids = [j.job_id for j in jobs if j.batch_id != batch_id]
    batch.reused = len(batch.reused_ids)
    stored = batches.save(batch)
    body_out = {**batches.describe(stored), "job_id": stored.batch_id, "jobs": [j.job_id for j in jobs]}
    return body_out, 202, {"Location": f"/api/v1/ingest/jobs/{stored.batch_id}"}


def get_any(*, job_id: str, **kwargs: Any) -> Response:
    """A batch (run-daily, backfill) or a single job, by id: the n8n polling alias."""
    batch = batches.load(job_id)
    if batch is None:
        return get_job(job_id=job_id, **kwargs)
    out = batches.describe(batch)
    out["job_id"] = batch.batch_id
    out["jobs"] = [j.public() for j in executors.state().list_jobs(batch_id=batch.batch_id, limit=MAX_LIMIT)]
    return out, 200, {}


def run_reaper(*, query: dict[str, str], **_: Any) -> Response:
    """Fail stuck jobs and re-enqueue stale queued ones (the ``tributary-reaper`` schedule calls this)."""
    done = reaper.reap(dry_run=parse_query(ReaperQuery, query).dry_run)
    return {"reaped": [r.__dict__ for r in done]}, 200, {}
