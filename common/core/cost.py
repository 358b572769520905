"""What a job spends, by kind, and its price: counts derived from what the job did, compute as it was measured.

The counts follow the code path a job takes (docs/cost.md walks through each): the api creates the job
document and one Cloud Task; each attempt is one delivery to the ingest function, which publishes a
``started`` event and a terminal one (``retrying`` between attempts, one ``progress`` per part of a split job);
every event is delivered to the status and load functions' subscriptions; each delivery reads the job before
it runs; the status function applies each event in one transaction (the job read, the job written with the
event's marker in it, the run record with the outcome); the load function records each loaded output. They are
functions of the stored job (attempts, parts, status, outputs), so they are the same for every job that did
the same. The compute is not modelled: the ingest measures its CPU time and peak memory and carries them in
the terminal event (``EventData.usage``), and the status function keeps the deciding event's on the job.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

from common.core.jobs import Job, JobStatus
from common.core.prices import (
    AS_OF,
    E2_MEDIUM_HOUR,
    HOURS_PER_MONTH,
    MEMORYSTORE_BASIC_GB_HOUR,
    PRICES,
    PUBSUB_MIN_BYTES,
    SCHEDULER_FREE_JOBS,
    SCHEDULER_JOB_MONTH,
)

#: Subscriptions every event is delivered to: the status function's and the load function's.
SUBSCRIPTIONS = 2
#: Bytes of a job event without its outputs (a CloudEvent envelope and ``data``), measured on this code's events.
EVENT_BYTES = 700


@dataclass
class Usage:
    """What one job (or a sum of jobs) used, by kind; the field names are :data:`common.core.prices.PRICES`' keys."""

    tasks_operations: float = 0
    pubsub_messages: float = 0
    pubsub_bytes: float = 0
    firestore_reads: float = 0
    firestore_writes: float = 0
    firestore_deletes: float = 0
    function_invocations: float = 0
    vcpu_seconds: float = 0
    gib_seconds: float = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def firestore_operations(self) -> float:
        return self.firestore_reads + self.firestore_writes + self.firestore_deletes


def events_of(job: Job) -> int:
    """How many events the job's ingest published: a ``started`` and a ``retrying`` per retried attempt, a
    ``started`` and the outcome for the last; one ``progress`` per part of a split job (its completion is
    counted in Firestore, not published); the outcome alone when nothing was planned (up to date, or a failure
    before planning)."""
    if not (job.started_at or job.status.terminal):
        return 0
    attempts = max(job.attempt, 1)
    parts = job.progress.total if job.progress else 0
    outcome = int(job.status in (JobStatus.succeeded, JobStatus.failed))
    retried = (attempts - 1) * (2 if parts else 1)
    if parts > 1:
        return retried + 1 + parts + int(job.status is JobStatus.failed)
    return retried + (1 if parts else 0) + outcome


def firestore_ops(job: Job, events: int) -> tuple[int, int]:
    """(reads, writes) of the job's path through Firestore (docs/cost.md has the table; an integration test
    counts the real calls of a one-part job against the emulator and holds them equal to this):

    - the api creates the job: 1 write;
    - each task delivery reads the job before it runs (a cancelled or replaced run does nothing): 1 read;
    - the status function applies each event in one transaction: the job read, the job written with the event's
      marker in it (1 read, 1 write); a part's progress event also reads its part's document (its marker) and
      writes that instead of the job while the job runs;
    - the deciding event writes the run record (1 write);
    - a split job is also counted after its ``started`` and each part (the job read, its parts counted: 2) and
      finished in one transaction (the job and its parts read, the job and the run record written);
    - the load function records each loaded output's report in the job: 1 write, nothing read.

    Not modelled: a source that keeps a position reads it to plan (its document and its last runs) and, when
    the deciding event moves its watermark or cursors, reads it again and updates it in a transaction.
    """
    parts = job.progress.total if job.progress and job.progress.total > 1 else 1
    attempts = max(job.attempt, 1) if job.started_at or job.status.terminal else 0
    deliveries = attempts + (parts if parts > 1 else 0)
    decided = int(job.status in (JobStatus.succeeded, JobStatus.failed))
    reads, writes = deliveries + events, 1 + events + decided
    if parts > 1:
        # Each part's progress event reads its part's document too.
        reads += parts + 2 * (1 + parts) + (1 + parts) * int(job.status is JobStatus.succeeded)
        writes += int(job.status is JobStatus.succeeded)
    loads = parts if job.status is JobStatus.succeeded and job.outputs else 0
    return reads, writes + loads


def usage_of(job: Job) -> Usage:
    """The modelled counts of ``job`` plus its measured compute (see the module's docstring and docs/cost.md)."""
    attempts = max(job.attempt, 1) if job.started_at or job.status.terminal else 0
    parts = job.progress.total if job.progress and job.progress.total > 1 else 0
    events = events_of(job)
    deliveries = attempts + parts
    # Every event but the one carrying the outputs is one small message; the outcome carries them.
    outputs_bytes = sum(len(o) + 3 for o in job.outputs)
    sizes = [max(PUBSUB_MIN_BYTES, EVENT_BYTES)] * max(events - 1, 0)
    if events:
        sizes.append(max(PUBSUB_MIN_BYTES, EVENT_BYTES + outputs_bytes))
    reads, writes = firestore_ops(job, events)
    compute = job.usage or {}
    return Usage(
        tasks_operations=1 + parts + deliveries,  # each task created, each delivery attempt
        pubsub_messages=events,
        pubsub_bytes=sum(sizes) * (1 + SUBSCRIPTIONS),  # published once, delivered to each subscription
        firestore_reads=reads,
        firestore_writes=writes,
        function_invocations=1 + deliveries + events * SUBSCRIPTIONS,  # api, ingest, status and load
        vcpu_seconds=float(compute.get("cpu_seconds", 0.0)),
        gib_seconds=float(compute.get("gib_seconds", 0.0)),
    )


def price(usage: Usage) -> list[dict[str, Any]]:
    """One line per kind of usage: what, quantity, unit, unit price and cost (list prices, no free tier)."""
    lines = []
    for key, p in PRICES.items():
        quantity = float(getattr(usage, key))
        lines.append(
            {"kind": key, "what": p.what, "quantity": quantity, "unit": p.unit, "unit_price_usd": p.usd_per_unit,
             "usd": quantity * p.usd_per_unit}
        )  # fmt: skip
    return lines


def job_cost(job: Job) -> dict[str, Any]:
    """The cost of one job, as ``GET /v1/jobs/{id}`` answers it: the counts, priced line by line, and the total."""
    usage = usage_of(job)
    lines = price(usage)
    return {
        "total_usd": sum(line["usd"] for line in lines),
        "prices_as_of": AS_OF,
        "usage": asdict(usage),
        "lines": lines,
        "free_tiers": "not applied per job: see the month's cost",
    }


def billed(usage: Usage, *, months: float = 1.0) -> float:
    """The price of a month's ``usage`` after the free tiers (which apply per billing account and month)."""
    total = 0.0
    for key, p in PRICES.items():
        total += max(0.0, float(getattr(usage, key)) - p.free_per_month * months) * p.usd_per_unit
    return total


def listed(usage: Usage) -> float:
    """The price of ``usage`` before free tiers."""
    return sum(line["usd"] for line in price(usage))


def rollup(jobs: Iterable[Job]) -> dict[str, Any]:
    """Cost per source per day and per month (free tiers applied at the month), over ``jobs``."""
    days: dict[tuple[str, str], tuple[int, Usage]] = defaultdict(lambda: (0, Usage()))
    months: dict[str, tuple[int, Usage]] = defaultdict(lambda: (0, Usage()))
    for job in jobs:
        when = (job.finished_at or job.created_at).date().isoformat()
        usage = usage_of(job)
        n, u = days[(when, job.source)]
        days[(when, job.source)] = (n + 1, u + usage)
        n, u = months[when[:7]]
        months[when[:7]] = (n + 1, u + usage)
    return {
        "prices_as_of": AS_OF,
        "days": [
            {"day": day, "source": source, "jobs": n, "usd": listed(u)}
            for (day, source), (n, u) in sorted(days.items(), reverse=True)
        ],
        "months": [
            {"month": month, "jobs": n, "list_usd": listed(u), "billed_usd": billed(u)}
            for month, (n, u) in sorted(months.items(), reverse=True)
        ],
    }


def idle_month(scheduler_jobs: int) -> float:
    """What a deployment costs in a month when nothing is ingested: its Cloud Scheduler jobs beyond the free ones
    (functions scale to zero; the reaper's runs and reads stay inside the free tiers; docs/cost.md)."""
    return max(scheduler_jobs - SCHEDULER_FREE_JOBS, 0) * SCHEDULER_JOB_MONTH


def celery_month() -> float:
    """The fixed monthly cost of a small Celery + Redis setup on Google Cloud: one e2-medium worker VM (beat on
    it too) and a 1 GB Basic Memorystore for Redis, running all month whether or not anything is ingested."""
    return (E2_MEDIUM_HOUR + MEMORYSTORE_BASIC_GB_HOUR * 1) * HOURS_PER_MONTH


def priced(job: Job) -> dict[str, Any]:
    """The job as the API answers it (``Job.public``) with its cost: ``GET /v1/jobs/{id}`` and the console."""
    return {**job.public(), "cost": job_cost(job)}
