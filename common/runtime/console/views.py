"""The console's JSON views under ``/ui/data``: what the pages need that the public API has no route for."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from common.core.cost import priced, rollup
from common.core.jobs import JobStatus
from common.runtime import batches, executors, status
from common.runtime.api.handlers import describe_sources
from common.runtime.api.models import MAX_LIMIT, ApiError
from common.runtime.console.schedule import in_words, next_runs

Handler = Callable[..., tuple[Any, int, dict[str, str]]]
#: The most jobs the charts aggregate (the newest ones).
CHART_JOBS = 2000
#: Batches listed on the batches page.
BATCHES_SHOWN = 25
DEAD_SHOWN = 100


def check_json_post(headers: dict[str, str]) -> None:
    """A console POST is a same-origin JSON call: a form or another site cannot make one.

    Raises:
        ApiError: 415 when the body is not declared JSON (forms send form or text types), 403 when the
            browser says the request came from another site.
    """
    ctype = headers.get("content-type", "")
    if "application/json" not in ctype:
        raise ApiError(415, "unsupported_media_type", f"Content-Type must be application/json, not {ctype!r}")
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise ApiError(403, "cross_site_request", "the console's actions are accepted from its own pages only")


def job_view(*, job_id: str, **_: Any) -> tuple[Any, int, dict[str, str]]:
    """A job with its timeline (the applied events), its run record and, for a batch child, its batch."""
    store = executors.state()
    job = store.get_job(job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id!r}", field="job_id")
    return (
        {"job": priced(job), "events": store.job_events(job_id), "run": store.job_run(job.source, job_id)},
        200,
        {},
    )


def sources_view(**_: Any) -> tuple[Any, int, dict[str, str]]:
    """Every source (as ``GET /v1/sources``) with its schedule in words and its next five run times."""
    out = []
    for s in describe_sources():
        schedule = s["schedule"]
        s.pop("params_schema", None)
        out.append({**s, "schedule_words": in_words(schedule["cron"], schedule["time_zone"]),
                    "next_runs": next_runs(schedule["cron"], schedule["time_zone"])})  # fmt: skip
    return {"sources": out}, 200, {}


def batches_view(**_: Any) -> tuple[Any, int, dict[str, str]]:
    """The newest backfills and run-daily batches, each with its live counts."""
    out = []
    for doc in executors.state().recent_batches(BATCHES_SHOWN):
        batch = batches.load(doc["batch_id"])
        if batch is not None:
            out.append(batches.describe(batch))
    return {"batches": out}, 200, {}


def batch_view(*, batch_id: str, **_: Any) -> tuple[Any, int, dict[str, str]]:
    """One batch with its counts and its children."""
    batch = batches.load(batch_id)
    if batch is None:
        raise ApiError(404, "batch_not_found", f"no batch {batch_id!r}", field="batch_id")
    children = [priced(j) for j in executors.state().list_jobs(batch_id=batch_id, limit=MAX_LIMIT)]
    return {"batch": batches.describe(batch), "jobs": children}, 200, {}


def dead_view(**_: Any) -> tuple[Any, int, dict[str, str]]:
    """Events the status function could not read (``dead_events``), each with its whole body as text."""
    letters = [
        {"id": d.id, "reason": d.reason, "received_at": d.received_at, "data": d.data.decode("utf-8", "replace")}
        for d in executors.state().dead_letters(DEAD_SHOWN)
    ]
    return {"dead_letters": letters}, 200, {}


def replay_view(*, letter_id: str, **_: Any) -> tuple[Any, int, dict[str, str]]:
    """Apply a kept event again (as ``tributary dlq replay`` does); removed when it applies."""
    store = executors.state()
    match = [d for d in store.dead_letters(DEAD_SHOWN) if d.id == letter_id]
    if not match:
        raise ApiError(404, "dead_letter_not_found", f"no dead letter {letter_id!r}", field="letter_id")
    job, outcome = status.replay(match[0].data)
    if job is None:
        return {"id": letter_id, "applied": False, "reason": outcome}, 200, {}
    store.delete_dead_letter(letter_id)
    return {"id": letter_id, "applied": True, "job_id": job.job_id, "status": job.status.value}, 200, {}


def _hour(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:00Z")


def charts_view(*, query: dict[str, str], **_: Any) -> tuple[Any, int, dict[str, str]]:
    """Jobs per hour by outcome (the last 48 hours) and records ingested per source per day (the last 14 days),
    over the newest jobs."""
    now = datetime.now(UTC)
    hours = [_hour(now - timedelta(hours=h)) for h in range(47, -1, -1)]
    days = [(now - timedelta(days=d)).date().isoformat() for d in range(13, -1, -1)]
    per_hour: dict[str, dict[str, int]] = {h: {s.value: 0 for s in JobStatus} for h in hours}
    per_day: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(days, 0))
    jobs = executors.state().list_jobs(limit=CHART_JOBS)
    for job in jobs:
        when = job.finished_at or job.created_at
        if (h := _hour(when)) in per_hour:
            per_hour[h][job.status.value] += 1
        day = when.astimezone(UTC).date().isoformat()
        if job.status is JobStatus.succeeded and day in days:
            per_day[job.source][day] += job.records
    cost = rollup(jobs)
    return (
        {"hours": hours, "jobs_per_hour": per_hour, "days": days, "records_per_day": dict(per_day), "cost": cost},
        200,
        {},
    )


#: (method, rule, handler) of every JSON view.
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/ui/data/jobs/<job_id>", job_view),
    ("GET", "/ui/data/sources", sources_view),
    ("GET", "/ui/data/batches", batches_view),
    ("GET", "/ui/data/batches/<batch_id>", batch_view),
    ("GET", "/ui/data/deadletters", dead_view),
    ("POST", "/ui/data/deadletters/<letter_id>:replay", replay_view),
    ("GET", "/ui/data/charts", charts_view),
)
HANDLERS = frozenset(fn for _, _, fn in ROUTES)
