"""The operator's queue controls on the Celery dispatcher, against a real Redis and a real Celery worker:
pause and resume (the workers' consumers), purge, and deleting a cancelled job's waiting tasks."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.celeryq import CeleryDispatcher
from common.celeryq.control import consumers
from common.core.ports import QueueControl
from common.core.tasks import TaskPayload
from common.local.celery_stack import worker_ready
from common.local.processes import stop_groups
from common.local.redis import RedisServer, celery_worker_command
from tests.executors.probe import Probe, fetches

REPO = Path(__file__).resolve().parents[2]
QUEUES = ["ingest-probe", "ingest-fred"]


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture
def start_worker(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Start Celery workers (named ``<name>@<host>``) consuming the probe's and fred's queues; each call returns the
    probe's fetch folder, and every worker is stopped at the end."""
    env = {
        **os.environ,
        "TRIBUTARY_PROFILE": "celery",
        "TRIBUTARY_CELERY_BROKER_URL": redis_server.url,
        "TRIBUTARY_SQLITE_PATH": str(tmp_path / "state.sqlite"),
        "TRIBUTARY_EXTRA_SOURCES": "tests.executors.probe:Probe",
        "PYTHONPATH": str(REPO),
        "PROBE_DIR": str(tmp_path / "probe"),
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str) -> Path:
        log = tmp_path / f"{name}.log"
        log.touch()
        ready = worker_ready(log)
        with log.open("ab") as out:
            argv = [*celery_worker_command(1, QUEUES), f"--hostname={name}@%h"]
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                    start_new_session=True)  # fmt: skip
        procs[name] = proc
        assert wait_for(lambda: ready() or proc.poll() is not None, 60) and proc.poll() is None, log.read_text()
        return tmp_path / "probe"

    try:
        yield start
    finally:
        stop_groups({name: proc.pid for name, proc in procs.items()})
        for proc in procs.values():
            proc.wait(timeout=10)


@pytest.fixture
def worker(start_worker: Callable[[str], Path]) -> Path:
    return start_worker("one")


def task(job_id: str) -> TaskPayload:
    return TaskPayload(job_id=job_id, source="probe", params={"run": job_id})


def test_pause_purge_delete_and_resume_on_a_real_worker(
    redis_server: RedisServer, worker: Path, start_worker: Callable[[str], Path]
) -> None:
    d = CeleryDispatcher(redis_server.url)
    assert isinstance(d, QueueControl), "the API's queue and cancel calls find the port"
    (host,) = consumers(d, "ingest-probe")
    assert [s.state for s in d.queue_states(["probe", "fred"])] == ["RUNNING", "RUNNING"]

    paused = d.set_queue_state("probe", "pause")
    assert paused is not None and (paused.queue, paused.state) == ("ingest-probe", "PAUSED")
    assert consumers(d, "ingest-probe") == [] and consumers(d, "ingest-fred") == [host], "only that queue"
    assert d.enqueue(task("probe-a"), Probe.queue) and d.enqueue(task("probe-b"), Probe.queue)
    time.sleep(2.0)  # a worker still consuming would have taken them by now (this checks nothing arrives)
    assert d.redis.llen("ingest-probe") == 2 and fetches(worker, "probe-a") == 0, "the paused queue is not consumed"

    assert d.delete_job_tasks("probe-b", "probe") == 1
    assert d.delete_job_tasks("probe-b", "probe") == 0, "already gone"
    assert d.pending("probe") == ["probe-a"]
    purged = d.set_queue_state("probe", "purge")
    assert purged is not None and purged.state == "PAUSED", "a purge leaves the pause"
    assert d.redis.llen("ingest-probe") == 0 and d.pending("probe") == []
    assert d.enqueue(task("probe-a"), Probe.queue) is False, "a purged id stays taken, as a Cloud Tasks name"

    start_worker("two")  # a worker started while the queue is paused leaves it alone too
    later = next(h for h in consumers(d, "ingest-fred") if h != host)
    assert wait_for(lambda: consumers(d, "ingest-probe") == [], 10), consumers(d, "ingest-probe")

    assert d.enqueue(task("probe-c"), Probe.queue)
    resumed = d.set_queue_state("probe", "resume")
    assert resumed is not None and resumed.state == "RUNNING"
    assert wait_for(lambda: consumers(d, "ingest-probe") == sorted([host, later]), 10), "both consume it again"
    assert wait_for(lambda: d.redis.llen("ingest-probe") == 0), "the worker consumes the queue again"
