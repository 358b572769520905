"""``POST /v1/backfills``: a range bounded by the source's data, planned, estimated at its queue's rate, confirmed.

A backfill is refused before anything is created when its range starts before the source's ``earliest``
data or in the future, or ends after today (UTC): a future range would "succeed" with nothing and then
stand in for a later real backfill of the same range. ``dry_run`` answers the plan (jobs, the queue's rate
and concurrency, the time the queue needs to dispatch them) and creates nothing; a backfill over
:data:`MAX_UNCONFIRMED_JOBS` jobs or :data:`MAX_UNCONFIRMED_SECONDS` of dispatching is created only with
``confirm``, since every job of it queues ahead of the source's scheduled runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from common.core.errors import BadParams, IngestError, TransientError
from common.runtime import batches
from common.runtime.api.handlers import parse_body, source_named
from common.runtime.api.models import ApiError, BackfillRequest, Response

if TYPE_CHECKING:  # pragma: no cover (a type only: the contract loads with a source's module, never at cold start)
    from common.sources.base import Source

#: Above this many jobs a backfill must be confirmed (``"confirm": true``).
MAX_UNCONFIRMED_JOBS = 1_000
#: Above this many seconds of dispatching at the queue's rate a backfill must be confirmed.
MAX_UNCONFIRMED_SECONDS = 3600.0


@dataclass(frozen=True)
class Estimate:
    """How long the source's queue needs to dispatch ``jobs`` first tasks: a floor, since a job may fan out
    parts and each task takes time of its own within ``concurrency``."""

    jobs: int
    rate: float
    concurrency: int

    @property
    def seconds(self) -> float:
        return self.jobs / self.rate

    @property
    def needs_confirmation(self) -> bool:
        return self.jobs > MAX_UNCONFIRMED_JOBS or self.seconds > MAX_UNCONFIRMED_SECONDS


def duration(seconds: float) -> str:
    """``seconds`` for a person: ``45 s``, ``12 min``, ``3.5 h``, ``6.0 days``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def check_range(source: Source, start: datetime, end: datetime, now: datetime) -> None:
    """Refuse a range that is empty, starts before the source's data or in the future, or ends after today.

    Raises:
        ApiError: 400 invalid_range naming ``start`` or ``end``.
    """
    if end <= start:
        raise ApiError(400, "invalid_range", "end must be after start", field="end")
    if start < source.earliest:
        raise ApiError(
            400,
            "invalid_range",
            f"{source.name} has data from {source.earliest.isoformat()}; start must not be earlier",
            field="start",
        )
    if start >= now:
        raise ApiError(400, "invalid_range", f"start is in the future (now is {now.isoformat()})", field="start")
    end_of_today = datetime.combine(now.date() + timedelta(days=1), time(), tzinfo=UTC)
    if end > end_of_today:
        raise ApiError(
            400, "invalid_range", f"end is after today ({now.date().isoformat()}, UTC): nothing is published yet",
            field="end",
        )  # fmt: skip


def plan(source: Source, start: datetime, end: datetime, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The child params of the backfill, as the source plans them.

    Raises:
        ApiError: bad params (400), the upstream could not be read (503, 502), nothing published (400).
    """
    try:
        children = batches.plan_backfill(source, start, end, params)
    except BadParams as exc:
        raise ApiError(400, "invalid_params", exc.message, field=exc.field) from None
    except TransientError as exc:
        raise ApiError(503, "upstream_unavailable", f"planning the backfill failed: {exc.message}") from None
    except IngestError as exc:
        raise ApiError(502, "upstream_error", f"planning the backfill failed: {exc.message}") from None
    if not children:
        raise ApiError(400, "empty_range", f"{source.name} published nothing between {start} and {end}", field="start")
    return children


def submit_backfill(*, query: dict[str, str], headers: dict[str, str], body: bytes) -> Response:
    """Check, plan and estimate the backfill; answer the plan (dry run), refuse it unconfirmed, or create it."""
    req = parse_body(BackfillRequest, body, headers, codes={"start": "invalid_range", "end": "invalid_range"})
    source = source_named(req.source)
    start, end = req.range()
    check_range(source, start, end, datetime.now(UTC))
    basis = {"source": source.name, "start": start.isoformat(), "end": end.isoformat(), "params": req.params}
    batch = batches.Batch(
        batch_id=batches.batch_id_for("backfill", basis),
        kind="backfill",
        source=source.name,
        start=basis["start"],
        end=basis["end"],
        params=req.params,
    )
    try:
        jobs = batches.child_jobs(batch, source, plan(source, start, end, req.params), trigger="backfill")
    except BadParams as exc:
        raise ApiError(400, "invalid_params", exc.message, field=exc.field) from None
    if len(jobs) > batches.MAX_CHILDREN:
        raise ApiError(
            400,
            "range_too_large",
            f"the range makes {len(jobs):,} jobs; the limit is {batches.MAX_CHILDREN:,}: split it",
            field="end",
        )
    estimate = Estimate(len(jobs), source.queue.max_dispatches_per_second, source.queue.max_concurrent_dispatches)
    if req.dry_run:
        return _plan_answer(source, basis, estimate), 200, {}
    if estimate.needs_confirmation and not req.confirm:
        raise ApiError(
            409,
            "confirmation_required",
            f"this backfill makes {estimate.jobs:,} jobs, which {source.name}'s queue needs at least "
            f"{duration(estimate.seconds)} to dispatch ({estimate.rate:g}/s), ahead of its scheduled runs: "
            'send "confirm": true to create it, or "dry_run": true to see the plan',
            field="confirm",
        )
    batches.create_jobs(batch, source, jobs)
    stored = batches.save(batch)
    return batches.describe(stored), 202, {"Location": f"/v1/backfills/{stored.batch_id}"}


def _plan_answer(source: Source, basis: dict[str, Any], estimate: Estimate) -> dict[str, Any]:
    return {
        "dry_run": True,
        "source": source.name,
        "start": basis["start"],
        "end": basis["end"],
        "jobs": estimate.jobs,
        "max_dispatches_per_second": estimate.rate,
        "max_concurrent_dispatches": estimate.concurrency,
        "estimated_seconds": round(estimate.seconds, 1),
        "confirmation_required": estimate.needs_confirmation,
        "max_unconfirmed_jobs": MAX_UNCONFIRMED_JOBS,
        "max_unconfirmed_seconds": MAX_UNCONFIRMED_SECONDS,
    }
