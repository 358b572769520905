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
def worker(redis_server: RedisServer, tmp_path: Path) -> Iterator[Path]:
    """One Celery worker consuming the probe's and fred's queues; yields the probe's fetch folder."""
    env = {
        **os.environ,
        "TRIBUTARY_PROFILE": "celery",
        "TRIBUTARY_CELERY_BROKER_URL": redis_server.url,
        "TRIBUTARY_SQLITE_PATH": str(tmp_path / "state.sqlite"),
        "TRIBUTARY_EXTRA_SOURCES": "tests.executors.probe:Probe",
        "PYTHONPATH": str(REPO),
        "PROBE_DIR": str(tmp_path / "probe"),
    }
    log = tmp_path / "worker.log"
    log.touch()
    ready = worker_ready(log)
    with log.open("ab") as out:
        proc = subprocess.Popen(celery_worker_command(1, QUEUES), stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=tmp_path, start_new_session=True)  # fmt: skip
    try:
        assert wait_for(lambda: ready() or proc.poll() is not None, 60) and proc.poll() is None, log.read_text()
        yield tmp_path / "probe"
    finally:
        stop_groups({"worker": proc.pid})
        proc.wait(timeout=10)


def task(job_id: str) -> TaskPayload:
    return TaskPayload(job_id=job_id, source="probe", params={"run": job_id})


def test_pause_purge_delete_and_resume_on_a_real_worker(redis_server: RedisServer, worker: Path) -> None:
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

    assert d.enqueue(task("probe-c"), Probe.queue)
    resumed = d.set_queue_state("probe", "resume")
    assert resumed is not None and resumed.state == "RUNNING"
    assert consumers(d, "ingest-probe") == [host]
    assert wait_for(lambda: d.redis.llen("ingest-probe") == 0), "the worker consumes the queue again"
