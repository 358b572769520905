"""The bundled samples answer every source's default params, at the local stack's queue rates."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from common.core.tasks import QueueConfig
from common.local.provisioning import LOCAL_RATE, local_queue
from common.local.samples import materialize
from common.local.stack import Stack, StackConfig
from common.sources import all_sources

pytestmark = pytest.mark.e2e
#: Seconds every default job may take together; production pacing made ReliefWeb alone take minutes.
BUDGET = 90.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    tmp: Path = tmp_path_factory.mktemp("samples")
    s = Stack(StackConfig(state_dir=tmp / "stack", replay_dir=materialize(tmp / "replay"), auto_ports=True))
    state = s.up()
    yield s, state
    s.down()


def test_local_queues_are_fast_and_keep_the_declared_limits() -> None:
    slow = QueueConfig(max_dispatches_per_second=0.01, max_concurrent_dispatches=1, min_backoff=60, max_backoff=1800)
    fast = local_queue(slow)
    assert fast.max_dispatches_per_second == LOCAL_RATE and fast.min_backoff <= 1 and fast.max_backoff <= 5
    assert (fast.max_concurrent_dispatches, fast.max_attempts, fast.dispatch_deadline) == (1, 5, 900.0)
    assert local_queue(QueueConfig(max_dispatches_per_second=500, min_backoff=0.1)).max_dispatches_per_second == 500
    assert local_queue(QueueConfig(min_backoff=0.1)).min_backoff == 0.1


def test_every_source_succeeds_with_its_default_params(stack) -> None:
    _, state = stack
    with httpx.Client(base_url=state.endpoints["api_url"], timeout=30) as api:
        jobs = {}
        for source in all_sources():
            r = api.post("/v1/jobs", json={"source": source.name, "params": {}})
            assert r.status_code == 202, r.text
            jobs[source.name] = r.json()["job_id"]
        deadline, done = time.monotonic() + BUDGET, {}
        while len(done) < len(jobs) and time.monotonic() < deadline:
            for name, job_id in jobs.items():
                job = api.get(f"/v1/jobs/{job_id}").json()
                if job["status"] in ("succeeded", "failed"):
                    done[name] = job
            time.sleep(0.3)
    assert set(done) == set(jobs), f"still running after {BUDGET} s: {set(jobs) - set(done)}"
    failed = {name: job["error"] for name, job in done.items() if job["status"] != "succeeded"}
    assert not failed
    # The samples hold data for the sources whose defaults do not depend on today's date.
    assert all(done[name]["records"] > 0 for name in ("gdelt", "fred", "worldbank", "ofac")), done


def test_the_stack_provisions_local_queue_rates(stack) -> None:
    from google.cloud import tasks_v2

    from common.gcp import clients, names
    from common.settings import use_settings

    s, _ = stack
    with use_settings(s.settings()) as settings:
        queue = clients.tasks(settings).get_queue(name=names.queue_path("reliefweb"))
    assert isinstance(queue, tasks_v2.Queue)
    assert queue.rate_limits.max_dispatches_per_second == LOCAL_RATE
    assert queue.rate_limits.max_concurrent_dispatches == 1  # as declared
