"""docs/cost.md says what common/core/prices.py holds: every price, free tier, the date, and the monthly figures."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from common.core import prices
from common.core.cost import celery_month, idle_month, usage_of
from common.core.jobs import Job, JobStatus, Progress
from common.sources import all_sources
from tests.conftest import REPO

DOC = (REPO / "docs" / "cost.md").read_text()
T0 = datetime(2026, 12, 1, tzinfo=UTC)
ROW = re.compile(r"^\| `(\w+)` \| (.+?) \| \$([\d.]+) per ([\d,]+)[^|]*\| ([\d,]+)[^|]*?a (month|day) \|$", re.M)


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_the_price_table_is_the_prices_file() -> None:
    rows = {m.group(1): m for m in ROW.finditer(DOC)}
    assert set(rows) == set(prices.PRICES), "one row per priced kind, no more"
    for key, p in prices.PRICES.items():
        m = rows[key]
        assert m.group(2) == p.what, key
        per_unit = number(m.group(3)) / number(m.group(4))
        assert abs(per_unit - p.usd_per_unit) <= 1e-9 * p.usd_per_unit, (key, per_unit, p.usd_per_unit)
        free = number(m.group(5)) * (prices.DAYS_PER_MONTH if m.group(6) == "day" else 1)
        assert free == p.free_per_month, key


def test_the_date_region_and_sources_are_the_prices_file() -> None:
    assert f"as of **{prices.AS_OF}**" in DOC and prices.REGION in DOC
    for url in prices.SOURCES.values():
        assert url in DOC


def test_the_idle_and_celery_figures_are_computed_from_the_prices() -> None:
    jobs = len(list(all_sources())) + 1  # one schedule per source, and the reaper's
    assert f"{jobs} jobs" in DOC
    assert f"**${idle_month(jobs):.2f} a month**" in DOC
    assert f"**${celery_month():.2f} a month**" in DOC
    assert f"${prices.E2_MEDIUM_HOUR} an hour" in DOC and f"${prices.MEMORYSTORE_BASIC_GB_HOUR} per" in DOC


def test_the_one_part_job_table_is_the_model() -> None:
    """The table's total row and the slot's figures are what ``usage_of`` counts for a one-part job that succeeded
    on its first attempt with a loaded output (tests/integration/test_firestore_ops.py holds the model to the
    code)."""
    job = Job(
        job_id="gdelt-x", source="gdelt", status=JobStatus.succeeded, attempt=1, started_at=T0, finished_at=T0,
        progress=Progress(done=1, total=1), outputs=["gs://b/normalized/gdelt/x.parquet"],
    )  # fmt: skip
    u = usage_of(job)
    total = re.search(r"^\| \*\*total\*\* \| (.+) \|$", DOC, re.M)
    assert total is not None
    cells = [number(c.strip().strip("*")) for c in total.group(1).split("|")]
    assert cells == [u.tasks_operations, u.pubsub_messages, u.firestore_reads, u.firestore_writes,
                     u.function_invocations]  # fmt: skip
    assert f"{u.firestore_reads:g} Firestore reads and {u.firestore_writes:g} writes" in DOC
