"""One running Tributary per executor profile, behind the same API, for the profile-parametrized e2e tests.

Each :class:`Deployment` serves a replay of GDELT (the bundled sample as many slots, one with a wrong
listed md5) and answers what the shared assertions need: its API, its data folder, the tasks left in a
queue, the event markers of a job, and its own way to publish events and deliver a task twice. ``gcp`` is
the local stack (the emulators); ``embedded`` is ``tributary serve`` in a child process, with no emulator.
Another executor adds a subclass and a name in :data:`PROFILES`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from common.core.events import Event
from common.gcp.firestore.markers import stored_markers
from common.local.ports import free_port
from common.local.samples import HERE as SAMPLES
from common.local.stack import Stack, StackConfig, client_env
from common.runtime import executors
from common.settings import Settings, use_settings
from tests.sources.gdelt_helpers import gdelt_replay_dir, slot_csv

SAMPLE = SAMPLES / "gdelt" / "20240115120000.export.CSV"
SAMPLE_ROWS = sum(1 for line in SAMPLE.read_bytes().splitlines() if line.strip())
GOOD_SLOT = "20240115120000"
BAD_SLOT = "20240115121500"
SLOW_SLOT = "20240115123000"
FLAKY_SLOT = "20240115124500"
BACKFILL_DAY = "2024-01-16"
#: Queue retries made fast, as an operator could (``gcloud tasks queues update``, or the embedded equivalent).
FAST = {"min_backoff": 0.2, "max_backoff": 1.0, "max_doublings": 2, "max_dispatches_per_second": 50.0}
FAST_CONCURRENCY = 8


def backfill_day(api: Any, timeout: float) -> dict[str, Any]:
    """Backfill GDELT's :data:`BACKFILL_DAY` through ``api`` (an httpx client) and wait until its 96 children are
    done or ``timeout`` passes; returns the batch as last read."""
    r = api.post("/v1/backfills", json={"source": "gdelt", "start": BACKFILL_DAY, "end": BACKFILL_DAY})
    assert r.status_code == 202, r.text
    batch: dict[str, Any] = r.json()
    assert batch["total"] == 96 and batch["created"] == 96
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = api.get(f"/v1/backfills/{batch['batch_id']}").json()
        if batch["done"] == 96:
            break
        time.sleep(0.5)
    return batch


def replay_dir(tmp: Path) -> Path:
    day = [f"20240116{h:02d}{m:02d}00" for h in range(24) for m in (0, 15, 30, 45)]
    csvs = [slot_csv(tmp, slot, SAMPLE) for slot in (GOOD_SLOT, BAD_SLOT, SLOW_SLOT, FLAKY_SLOT, *day)]
    return gdelt_replay_dir(tmp / "replay", csvs, corrupt_md5_of=BAD_SLOT)


class Deployment:
    """What every profile offers the shared tests."""

    profile = ""
    api_url = ""
    replay_url = ""
    data_dir: Path

    def settings(self) -> Settings:
        """Settings that reach this deployment's state and bus from the test process."""
        raise NotImplementedError

    @contextmanager
    def using(self) -> Iterator[Settings]:
        with use_settings(self.settings()) as s:
            yield s

    def speed_up(self, source: str) -> None:
        raise NotImplementedError

    def tasks_left(self, job_id: str, source: str) -> int:
        with self.using() as s:
            pending = executors.dispatcher(source, s).pending(source)
        return sum(1 for t in pending if t == job_id or t.startswith(job_id + "--") or t.endswith("/" + job_id))

    def markers(self, job_id: str) -> set[str]:
        raise NotImplementedError

    def publish(self, events: list[Event]) -> None:
        with self.using() as s:
            bus = executors.events(s)
            for event in events:
                bus.publish(event)

    def deliver_again(self, job: dict[str, Any]) -> None:
        """Deliver the job's first task once more, under another task name (a duplicate delivery)."""
        raise NotImplementedError

    def hits(self) -> Any:
        return httpx.get(f"{self.replay_url}/_replay/hits").json()

    def add_faults(self, *rules: dict[str, Any]) -> None:
        httpx.post(f"{self.replay_url}/_replay/faults", json=list(rules)).raise_for_status()

    def stop(self) -> None:
        raise NotImplementedError


class GcpDeployment(Deployment):
    """The local stack: Cloud Tasks, Pub/Sub and Firestore emulators behind the functions."""

    profile = "gcp"

    def __init__(self, tmp: Path) -> None:
        self.stack = Stack(StackConfig(state_dir=tmp / "stack", replay_dir=replay_dir(tmp), auto_ports=True))
        self.state = self.stack.up()
        e = self.state.endpoints
        self.api_url, self.replay_url = e["api_url"], e["replay_url"]
        self.data_dir = Path(e["output_uri"].removeprefix("file://"))
        self.env = {
            "TRIBUTARY_PROJECT": self.state.project,
            "PUBSUB_EMULATOR_HOST": e["pubsub_emulator_host"],
            "FIRESTORE_EMULATOR_HOST": e["firestore_emulator_host"],
            "CLOUD_TASKS_EMULATOR_HOST": e["tasks_emulator_host"],
        }

    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def speed_up(self, source: str) -> None:
        from google.protobuf import duration_pb2

        from common.gcp import clients, names

        with client_env(self.env), self.using():
            client = clients.tasks()
            queue = client.get_queue(name=names.queue_path(source))
            queue.rate_limits.max_dispatches_per_second = FAST["max_dispatches_per_second"]
            queue.rate_limits.max_concurrent_dispatches = FAST_CONCURRENCY
            for name in ("min_backoff", "max_backoff"):
                d = duration_pb2.Duration()
                d.FromNanoseconds(int(FAST[name] * 1e9))
                setattr(queue.retry_config, name, d)
            queue.retry_config.max_doublings = int(FAST["max_doublings"])
            client.update_queue(queue=queue)

    def markers(self, job_id: str) -> set[str]:
        from common.gcp import clients

        with client_env(self.env), self.using():
            return set(stored_markers(clients.firestore().collection("jobs").document(job_id)))

    def deliver_again(self, job: dict[str, Any]) -> None:
        from google.cloud import tasks_v2

        from common.core.tasks import TaskPayload
        from common.gcp import clients, names

        body = TaskPayload(job_id=job["job_id"], source=job["source"], params=job["params"]).model_dump_json()
        with client_env(self.env), self.using() as s:
            task = tasks_v2.Task(
                http_request=tasks_v2.HttpRequest(
                    http_method=tasks_v2.HttpMethod.POST,
                    url=s.ingest_url.format(source=job["source"]),
                    headers={"Content-Type": "application/json"},
                    body=body.encode(),
                )
            )
            clients.tasks().create_task(parent=names.queue_path(job["source"]), task=task)

    def stop(self) -> None:
        self.stack.down()


class EmbeddedDeployment(Deployment):
    """``tributary serve`` in a child process: SQLite state, embedded dispatch and events, no emulator."""

    profile = "embedded"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        root = replay_dir(tmp)
        port = free_port()
        self.replay = subprocess.Popen(
            [sys.executable, "-m", "common.local.recorded", "--root", str(root), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.replay_url = f"http://127.0.0.1:{port}"
        self.data_dir = tmp / "data"
        self.sqlite = tmp / "tributary.sqlite"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")},
            "TRIBUTARY_PROFILE": "embedded",
            "TRIBUTARY_SQLITE_PATH": str(self.sqlite),
            "TRIBUTARY_OUTPUT_URI": self.data_dir.as_uri(),
            "TRIBUTARY_GDELT_BASE_URL": f"{self.replay_url}/gdelt",
            "TRIBUTARY_NO_SECRET_MANAGER": "1",
            "TRIBUTARY_SECRETS_FILE": str(tmp / "secrets.json"),
            "TRIBUTARY_HTTP_READ_TIMEOUT": "2",
            "TRIBUTARY_EMBEDDED_LEASE": "5",
        }
        self.server: subprocess.Popen[bytes] | None = None
        self.start()
        _wait(lambda: httpx.get(f"{self.replay_url}/_replay/hits").status_code == 200)

    def start(self) -> None:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        log = (self.tmp / "serve.log").open("ab")
        self.server = subprocess.Popen(
            [str(Path(sys.executable).parent / "tributary"), "serve", "--port", str(port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
        )
        _wait(lambda: httpx.get(f"{self.api_url}/healthz").status_code == 200, timeout=60)

    def kill(self) -> None:
        """``kill -9`` the serving process (its workers, bus and clock with it)."""
        assert self.server is not None
        self.server.send_signal(signal.SIGKILL)
        self.server.wait(10)

    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def speed_up(self, source: str) -> None:
        from common.embedded.queue import SqliteDispatcher

        SqliteDispatcher(self.sqlite).update_queue(source, max_concurrent_dispatches=FAST_CONCURRENCY, **FAST)

    def markers(self, job_id: str) -> set[str]:
        from common.embedded.db import database

        rows = database(self.sqlite).read("SELECT event_id FROM job_events WHERE job_id = ?", (job_id,))
        return {r["event_id"] for r in rows}

    def deliver_again(self, job: dict[str, Any]) -> None:
        from common.core.tasks import TaskPayload
        from common.embedded.db import database

        payload = TaskPayload(job_id=job["job_id"], source=job["source"], params=job["params"])
        with database(self.sqlite).write() as c:
            c.execute(
                "INSERT INTO tasks (task_id, source, job_id, payload, not_before, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (f"{job['job_id']}--again", job["source"], job["job_id"], payload.model_dump_json(), 0, time.time()),
            )

    def stop(self) -> None:
        for proc in (self.server, self.replay):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _wait(ready: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("a server did not start in time")


#: Profile name -> how to start it (another executor adds its line).
PROFILES: dict[str, Callable[[Path], Deployment]] = {"gcp": GcpDeployment, "embedded": EmbeddedDeployment}
