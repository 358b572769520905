"""``tributary serve`` with worker processes (``TRIBUTARY_EMBEDDED_PROCESSES``): the same file, more cores.

The processes share the SQLite file: a backfill's jobs are run by more than one process and each succeeds
once; a ``kill -9`` of the serving process takes its worker processes with it (no orphan keeps running a
task beside the restarted server), and the job then completes once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.deployments import SAMPLE_ROWS, SLOW_SLOT, EmbeddedDeployment, backfill_day
from tests.e2e.test_profiles import settled, submit, wait_for

pytestmark = pytest.mark.e2e

PROCESSES = 2
#: Threads per process, fewer than the queue's concurrency (tests.e2e.deployments.FAST_CONCURRENCY), so that
#: one process's threads cannot hold every dispatch slot.
THREADS = 2


class ServeWithProcesses(EmbeddedDeployment):
    """The embedded deployment, its ``tributary serve`` started with worker processes."""

    def start(self) -> None:
        self.env |= {"TRIBUTARY_EMBEDDED_PROCESSES": str(PROCESSES), "TRIBUTARY_EMBEDDED_WORKERS": str(THREADS)}
        super().start()

    def workers(self) -> list[psutil.Process]:
        """The worker processes (not multiprocessing's resource tracker, also a child)."""
        assert self.server is not None
        children = psutil.Process(self.server.pid).children()
        return [p for p in children if "spawn_main" in " ".join(p.cmdline())]


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeWithProcesses]:
    deployment = ServeWithProcesses(tmp_path_factory.mktemp("e2e-processes"))
    deployment.speed_up("gdelt")
    yield deployment
    deployment.stop()


def test_the_worker_processes_share_a_backfill_and_each_job_succeeds_once(dep: ServeWithProcesses) -> None:
    assert len(dep.workers()) == PROCESSES - 1, "serve started its worker process"
    with httpx.Client(base_url=dep.api_url, timeout=30) as api:
        batch = backfill_day(api, timeout=300)
        assert batch["counts"]["succeeded"] == 96, batch
        jobs = api.get("/v1/jobs", params={"batch_id": batch["batch_id"], "limit": 500}).json()["jobs"]
    assert sum(j["records"] for j in jobs) == 96 * SAMPLE_ROWS and {j["attempt"] for j in jobs} == {1}
    log = (Path(dep.tmp) / "serve.log").read_text()
    assert "tributary-worker-process-1" in log, "a worker process ran some of the tasks"


def test_kill_9_of_serve_takes_its_worker_processes_and_the_job_completes_once(dep: ServeWithProcesses) -> None:
    dep.add_faults({"path": f"/gdelt/{SLOW_SLOT}.export.CSV.zip", "mode": "slow", "delay": 1.5, "times": 1})
    with httpx.Client(base_url=dep.api_url, timeout=30) as api:
        job_id = submit(api, SLOW_SLOT)["job_id"]
        deadline = time.monotonic() + 30
        while api.get(f"/v1/jobs/{job_id}").json()["status"] != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
    children = dep.workers()
    dep.kill()
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, "the worker processes ended with their parent"
    dep.start()
    with httpx.Client(base_url=dep.api_url, timeout=30) as api:
        job = wait_for(api, job_id)
    assert job["status"] == "succeeded" and job["attempt"] == 2 and job["records"] == SAMPLE_ROWS, job
    settled(dep, job)
