"""The real gcloud CLI against the emulators' REST fronts, offline, with the exports of ``tributary dev env``.

Each gcloud command takes one to two seconds, so the module keeps to one pass over the commands the docs name.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.local.devenv import emulator_exports
from common.local.emulators.scheduler import SchedulerEmulator
from common.local.emulators.tasks import TasksEmulator
from tests.emulators.helpers import Receiver
from tests.emulators.test_stock_clients import verified

GCLOUD = shutil.which("gcloud")
pytestmark = pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed (the Google Cloud SDK's CLI)")

PROJECT = "gcloud-test"
LOCATION = "us-central1"
SA = f"invoker@{PROJECT}.iam.gserviceaccount.com"
AUD = "https://ingest.example.test"


class Gcloud:
    """Runs gcloud with a throwaway ``CLOUDSDK_CONFIG`` and only the environment it needs."""

    def __init__(self, config: Path, exports: dict[str, str]) -> None:
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(config),
            "LANG": "C.UTF-8",
            "CLOUDSDK_CONFIG": str(config),
            "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
            "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
            **exports,
        }

    def __call__(self, *args: str) -> Any:
        """Run ``gcloud ARGS --format=json``; the parsed output (None when it printed nothing)."""
        assert GCLOUD is not None
        proc = subprocess.run(
            [GCLOUD, *args, "--format=json"], env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, f"gcloud {' '.join(args)} failed:\n{proc.stderr}"
        return json.loads(proc.stdout) if proc.stdout.strip() else None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_gcloud_tasks_commands(tmp_path: Path, receiver: Receiver) -> None:
    with TasksEmulator(rest_port=0) as emu:
        assert emu.rest_url is not None
        gcloud = Gcloud(tmp_path, emulator_exports(project=PROJECT, tasks_rest=emu.rest_url))
        where = ("--location", LOCATION)
        gcloud("tasks", "queues", "create", "ingest", *where, "--max-attempts", "5")
        assert [q["name"].rsplit("/", 1)[1] for q in gcloud("tasks", "queues", "list", *where)] == ["ingest"]
        gcloud("tasks", "queues", "update", "ingest", *where, "--min-backoff=2s", "--max-dispatches-per-second=20")
        queue = gcloud("tasks", "queues", "describe", "ingest", *where)
        assert queue["retryConfig"] == {
            "maxAttempts": 5,
            "minBackoff": "2s",
            "maxBackoff": "3600s",
            "maxDoublings": 16,
        }
        assert queue["rateLimits"]["maxDispatchesPerSecond"] == 20.0
        queue_url = f"{emu.rest_url}/v2/projects/{PROJECT}/locations/{LOCATION}/queues/ingest"
        gcloud("tasks", "queues", "pause", "ingest", *where)  # pause, resume and purge print no resource
        assert httpx.get(queue_url).json()["state"] == "PAUSED"
        gcloud("tasks", "queues", "resume", "ingest", *where)
        assert httpx.get(queue_url).json()["state"] == "RUNNING"

        later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        task = ("--queue", "ingest", *where)
        gcloud(
            "tasks", "create-http-task", "part-1", *task, "--url", f"{receiver.url}/ingest", "--method", "POST",
            "--body-content", '{"part": 1}', "--header", "Content-Type: application/json",
            "--oidc-service-account-email", SA, "--oidc-token-audience", AUD, "--schedule-time", later,
        )  # fmt: skip
        assert [t["name"].rsplit("/", 1)[1] for t in gcloud("tasks", "list", *task)] == ["part-1"]
        described = gcloud("tasks", "describe", "part-1", *task, "--response-view", "full")
        assert described["httpRequest"]["body"] == "eyJwYXJ0IjogMX0="  # base64, as Google's JSON has bytes
        assert described["httpRequest"]["oidcToken"] == {"serviceAccountEmail": SA, "audience": AUD}
        gcloud("tasks", "run", "part-1", *task)
        (hit,) = receiver.wait_for(1)
        assert (hit.path, hit.body, hit.headers["content-type"]) == ("/ingest", b'{"part": 1}', "application/json")
        assert hit.headers["x-cloudtasks-queuename"] == "ingest" and hit.headers["x-cloudtasks-taskname"] == "part-1"
        assert verified(hit.headers["authorization"], emu.signer)["email"] == SA

        gcloud("tasks", "create-http-task", "part-2", *task, "--url", receiver.url, "--schedule-time", later)
        gcloud("tasks", "delete", "part-2", *task)
        gcloud("tasks", "create-http-task", "part-3", *task, "--url", receiver.url, "--schedule-time", later)
        gcloud("tasks", "queues", "purge", "ingest", *where)
        assert "purgeTime" in httpx.get(queue_url).json()
        assert httpx.get(f"{queue_url}/tasks").json() == {}
        gcloud("tasks", "queues", "delete", "ingest", *where)
        assert emu.engine.queue_count() == 0


def test_gcloud_scheduler_commands(tmp_path: Path, receiver: Receiver) -> None:
    with SchedulerEmulator(rest_port=0) as emu:
        assert emu.rest_url is not None
        gcloud = Gcloud(tmp_path, emulator_exports(project=PROJECT, scheduler_rest=emu.rest_url))
        where = ("--location", LOCATION)
        job = gcloud(
            "scheduler", "jobs", "create", "http", "nightly", *where, "--schedule", "* * * * *",
            "--uri", f"{receiver.url}/v1/jobs", "--http-method", "POST", "--message-body", '{"source": "gdelt"}',
            "--headers", "Content-Type=application/json", "--oidc-service-account-email", SA,
            "--oidc-token-audience", AUD, "--max-retry-attempts", "2", "--attempt-deadline", "30s",
        )  # fmt: skip
        assert job["state"] == "ENABLED" and job["attemptDeadline"] == "30s" and job["timeZone"] == "Etc/UTC"
        assert job["httpTarget"]["headers"]["User-Agent"] == "Google-Cloud-Scheduler"
        assert [j["name"].rsplit("/", 1)[1] for j in gcloud("scheduler", "jobs", "list", *where)] == ["nightly"]
        gcloud("scheduler", "jobs", "update", "http", "nightly", *where, "--time-zone", "Europe/Paris")
        described = gcloud("scheduler", "jobs", "describe", "nightly", *where)
        assert (described["schedule"], described["timeZone"]) == ("* * * * *", "Europe/Paris")
        gcloud("scheduler", "jobs", "pause", "nightly", *where)
        assert emu.advance(120) == []  # paused: the cron does not fire
        gcloud("scheduler", "jobs", "resume", "nightly", *where)
        fired = emu.advance(60)  # the cron fires once a minute
        assert [r.kind for r in fired] == ["schedule"] and fired[0].status == 200
        gcloud("scheduler", "jobs", "run", "nightly", *where)
        hits = receiver.wait_for(2)
        for hit in hits:
            assert (hit.path, hit.body) == ("/v1/jobs", b'{"source": "gdelt"}')
            assert hit.headers["x-cloudscheduler-jobname"] == "nightly"
            assert verified(hit.headers["authorization"], emu.signer)["email"] == SA
        gcloud("scheduler", "jobs", "delete", "nightly", *where)
        assert emu.engine.job_count() == 0
