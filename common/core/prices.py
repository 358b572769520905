"""Google Cloud's published list prices for what a job uses: the one table the cost model prices with.

Recorded on :data:`AS_OF` from the pages in :data:`SOURCES` (list prices in US dollars, region us-central1,
Cloud Run tier 1, no committed-use discounts). ``docs/cost.md`` repeats this table and a test holds the two
equal. Change a price here, with the date, and the docs with it.
"""

from __future__ import annotations

from dataclasses import dataclass

AS_OF = "2026-12-03"
REGION = "us-central1"
SOURCES = {
    "tasks": "https://cloud.google.com/tasks/pricing",
    "pubsub": "https://cloud.google.com/pubsub/pricing",
    "firestore": "https://cloud.google.com/firestore/pricing",
    "functions": "https://cloud.google.com/run/pricing",
    "scheduler": "https://cloud.google.com/scheduler/pricing",
    "compute": "https://cloud.google.com/compute/vm-instance-pricing",
    "memorystore": "https://cloud.google.com/memorystore/docs/redis/pricing",
}
GIB = 1024**3
TIB = 1024**4
#: Pub/Sub bills at least this many bytes for each message published or delivered.
PUBSUB_MIN_BYTES = 1000
#: Days in the month that Firestore's daily free quota is multiplied by.
DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class Price:
    """The list price of one kind of usage, and its free tier per month (per day for Firestore, times 30)."""

    what: str
    unit: str
    usd_per_unit: float
    free_per_month: float
    source: str


#: Per-use prices, by the kind of usage the cost model counts (``common.core.cost.Usage``).
PRICES: dict[str, Price] = {
    "tasks_operations": Price("Cloud Tasks operations (calls and deliveries)", "operation", 0.40 / 1e6, 1e6, "tasks"),
    "pubsub_bytes": Price("Pub/Sub throughput (published and delivered)", "byte", 40.0 / TIB, 10 * GIB, "pubsub"),
    "firestore_reads": Price("Firestore document reads", "read", 0.03 / 1e5, 50_000 * DAYS_PER_MONTH, "firestore"),
    "firestore_writes": Price("Firestore document writes", "write", 0.09 / 1e5, 20_000 * DAYS_PER_MONTH, "firestore"),
    "firestore_deletes": Price(
        "Firestore document deletes", "delete", 0.01 / 1e5, 20_000 * DAYS_PER_MONTH, "firestore"
    ),
    "function_invocations": Price("Function invocations (requests)", "request", 0.40 / 1e6, 2e6, "functions"),
    "vcpu_seconds": Price("Function vCPU time", "vCPU-second", 0.000024, 180_000, "functions"),
    "gib_seconds": Price("Function memory time", "GiB-second", 0.0000025, 360_000, "functions"),
}

#: Monthly prices of what runs whether or not anything is ingested (the idle cost), and of a Celery + Redis setup.
SCHEDULER_JOB_MONTH = 0.10
SCHEDULER_FREE_JOBS = 3
HOURS_PER_MONTH = 730
E2_MEDIUM_HOUR = 0.033503
MEMORYSTORE_BASIC_GB_HOUR = 0.049
