"""The cost model: counts derived from what a job did, measured compute carried by its outcome, list prices."""

from __future__ import annotations

from datetime import UTC, datetime

from common.core.cost import Usage, billed, events_of, job_cost, listed, rollup, usage_of
from common.core.events import Event, EventData, EventType, PartProgress
from common.core.jobs import Job, JobStatus, Progress, apply_event, summed_usage
from common.core.prices import PRICES

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)
MEASURED = {"cpu_seconds": 0.5, "wall_seconds": 2.0, "peak_rss_bytes": 256 * 1024**2, "gib_seconds": 0.5}


def done(attempt: int = 1, *, parts: int = 1, status: JobStatus = JobStatus.succeeded, outputs: int = 3) -> Job:
    return Job(
        job_id="gdelt-x", source="gdelt", status=status, attempt=attempt, started_at=T0, finished_at=T0,
        progress=Progress(done=parts, total=parts), outputs=[f"file:///o/{i}" for i in range(outputs)],
        usage=MEASURED,
    )  # fmt: skip


def test_a_one_part_job_is_two_messages_two_task_operations_and_eight_firestore_operations() -> None:
    u = usage_of(done())
    assert u.pubsub_messages == 2  # started, succeeded
    assert u.tasks_operations == 2  # created, delivered once
    # reads: the ingest's look at the job, the job in each event's transaction; writes: the job created, the job
    # with each event's marker, the run record, the load's report (tests/integration/test_firestore_ops.py).
    assert (u.firestore_reads, u.firestore_writes) == (1 + 2, 1 + 2 + 1 + 1)
    assert u.function_invocations == 1 + 1 + 2 * 2  # api, ingest, status and load for each event
    assert u.pubsub_bytes == 2 * 1000 * 3  # two messages at the 1,000-byte minimum, published and delivered twice
    assert (u.vcpu_seconds, u.gib_seconds) == (0.5, 0.5), "compute is what the ingest measured"


def test_retries_add_an_attempt_s_events_and_a_delivery() -> None:
    once, twice = usage_of(done()), usage_of(done(attempt=2))
    assert twice.pubsub_messages - once.pubsub_messages == 2  # the retried attempt's started and retrying
    assert twice.tasks_operations - once.tasks_operations == 1


def test_a_split_job_counts_its_parts() -> None:
    job = done(parts=4)
    assert events_of(job) == 1 + 4  # started, one progress per part; the completion is not published
    assert usage_of(job).tasks_operations == 1 + 4 + 1 + 4


def test_a_job_that_never_ran_costs_its_creation_only() -> None:
    u = usage_of(Job(job_id="gdelt-q", source="gdelt"))
    assert u.pubsub_messages == 0 and u.firestore_writes == 1 and u.function_invocations == 1


def test_the_cost_is_priced_line_by_line_at_list_prices() -> None:
    cost = job_cost(done())
    assert {line["kind"] for line in cost["lines"]} == set(PRICES)
    assert abs(cost["total_usd"] - sum(line["usd"] for line in cost["lines"])) < 1e-15
    assert 0 < cost["total_usd"] < 0.001


def test_free_tiers_apply_per_month() -> None:
    month = Usage(firestore_reads=1e6, function_invocations=1e6, vcpu_seconds=1e5)
    assert billed(month) < listed(month)
    assert billed(Usage(function_invocations=2e6)) == 0.0
    out = rollup([done(), done()])
    assert out["months"][0]["jobs"] == 2 and out["months"][0]["billed_usd"] == 0.0
    assert out["days"][0] == {"day": "2026-12-01", "source": "gdelt", "jobs": 2, "usd": out["months"][0]["list_usd"]}


def test_the_deciding_outcome_carries_its_measured_usage_onto_the_job() -> None:
    job = Job(job_id="gdelt-x", source="gdelt")
    data = EventData(
        job_id="gdelt-x", source="gdelt", attempt=1, usage=MEASURED, progress=PartProgress(done=1, total=1)
    )
    after = apply_event(job, Event.make(EventType.succeeded, data))
    assert after is not None and after.usage == MEASURED
    assert Event.from_bytes(Event.make(EventType.succeeded, data).to_bytes()).data.usage == MEASURED


def test_parts_usage_adds_seconds_and_keeps_the_largest_peak() -> None:
    a = {"cpu_seconds": 1.0, "wall_seconds": 2.0, "peak_rss_bytes": 10.0, "gib_seconds": 0.1}
    b = {"cpu_seconds": 0.5, "wall_seconds": 1.0, "peak_rss_bytes": 30.0, "gib_seconds": 0.2}
    total = summed_usage([a, None, b])
    assert total is not None
    assert total["cpu_seconds"] == 1.5 and total["peak_rss_bytes"] == 30.0 and abs(total["gib_seconds"] - 0.3) < 1e-12
    assert summed_usage([None]) is None
