"""At-least-once delivery: Cloud Tasks delivering every task 3 times, Pub/Sub duplicating and reordering events.

- **Tasks**: the Tasks emulator is restarted with ``--duplicate-deliveries 3`` (``Stack.restart``), so each
  attempt of every task reaches the ingest function 3 times at once: 3 concurrent runs of the same plan, the
  same fan-out, the same part, writing the same objects and publishing the same event ids.
- **Pub/Sub**: a push proxy (``pushproxy.py``) in front of the status function forwards every push twice at
  once (the copy under another message id), once more 1.5 s later, and holds back the first push of every
  ``started``/``progress``/``retrying`` event for 1.5 s so that it arrives after the job's terminal event.

In both, every job must end as it would with single delivery: the same state and records, one Parquet object
per part, and one marker per distinct event id.
"""

from __future__ import annotations

import pytest

from tests.faults.harness import FaultStack, Spec, comtrade_spec, gdelt_spec, orphans
from tests.faults.pushproxy import PushProxy

TIERS = [pytest.param("smoke", id="smoke"), pytest.param("full", marks=pytest.mark.faults, id="full")]
R503 = {"mode": "answer", "status": 503, "body": "service unavailable"}


def _jobs(fs: FaultStack, tier: str, tag: str) -> list[tuple[str, Spec]]:
    """(variant, spec) of the jobs a delivery scenario runs; faults for the transient one are installed."""
    jobs = [
        ("one part", gdelt_spec(fs.pools.take("plain"))),
        ("two parts (fan-out)", gdelt_spec(fs.pools.take("two_streams"), streams=("events", "mentions"))),
    ]
    if tier == "full":
        slot = fs.pools.take("plain")
        fs.add_faults({**R503, "path": fs.zip_path(slot), "times": 4, "tag": tag})
        md5 = fs.pools.take("md5")
        jobs += [
            ("permanent failure", gdelt_spec(md5, status="failed", kind="permanent", message=("does not match",))),
            ("two parts, Comtrade", comtrade_spec(fs.cmd(), reporters=(156, 842))),
            ("503 that clears", gdelt_spec(slot)),
        ]
    return jobs


@pytest.mark.parametrize("tier", TIERS)
def test_every_task_delivered_three_times(fault_stack: FaultStack, tier: str) -> None:
    fs = fault_stack
    fs.stack.restart("tasks", extra_args=["--duplicate-deliveries", "3"])
    fs.speed_up_queues()
    try:
        jobs = [(variant, spec, fs.submit(spec)) for variant, spec in _jobs(fs, tier, f"tasks-x3-{tier}")]
        for variant, spec, submitted in jobs:
            fs.wait_terminal(submitted["job_id"])
            fs.wait_copies(submitted["job_id"], per_attempt=2)
            _, copies = fs.deliveries(submitted["job_id"])
            figures = fs.check(
                spec,
                submitted,
                fault="every task delivered 3 times",
                variant=("smoke " if tier == "smoke" else "") + variant,
                injected=copies,
            )
            assert figures["copies"] == 2 * figures["deliveries"], figures
    finally:
        fs.stack.restart("tasks")
        fs.speed_up_queues()
    assert not orphans(fs)


@pytest.mark.parametrize("tier", TIERS)
def test_pubsub_events_duplicated_and_reordered(fault_stack: FaultStack, tier: str) -> None:
    fs = fault_stack
    proxy = PushProxy(fs.endpoints["status_url"], copies=2, concurrent=tier == "full", reorder=True, late_copy=1.5)
    proxy.start(fs.subscriber, fs.project)
    try:
        jobs = [(variant, spec, fs.submit(spec)) for variant, spec in _jobs(fs, tier, f"pubsub-{tier}")]
        for _, _, submitted in jobs:
            fs.wait_terminal(submitted["job_id"])
        proxy.wait_idle()
        for variant, spec, submitted in jobs:
            job_id = submitted["job_id"]
            fs.check(
                spec,
                submitted,
                fault="Pub/Sub events duplicated + reordered",
                variant=("smoke " if tier == "smoke" else "") + variant,
                injected=proxy.injected[job_id],
            )
    finally:
        proxy.stop(fs.subscriber, fs.project, fs.endpoints["status_url"])
    assert proxy.deferred > 0 and proxy.forwarded >= 2 * proxy.pushes
    reordered = [job for job, kinds in proxy.order.items() if _terminal_before_started(kinds)]
    assert reordered, f"no terminal event overtook a started event: {dict(proxy.order)}"
    assert not orphans(fs)


def _terminal_before_started(kinds: list[str]) -> bool:
    return any(k in ("succeeded", "failed") for k in kinds[: kinds.index("started")]) if "started" in kinds else False
