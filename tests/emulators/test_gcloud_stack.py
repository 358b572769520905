"""With the local stack up and ``eval "$(tributary dev env)"``, gcloud works against it unchanged: a task made with
``gcloud tasks create-http-task`` reaches the ingest function, which verifies its OIDC token, and a job made with
``gcloud scheduler jobs create http`` fires on its cron and through ``run``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common.local.stack import Stack, StackConfig, StackState
from tests.emulators.test_gcloud import Gcloud

pytestmark = pytest.mark.skipif(
    shutil.which("gcloud") is None, reason="gcloud is not installed (the Google Cloud SDK's CLI)"
)
TRIBUTARY = Path(sys.executable).parent / "tributary"
WHERE = ("--location", "us-central1")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackState]:
    s = Stack(StackConfig(state_dir=tmp_path_factory.mktemp("gcloud-stack") / "stack", auto_ports=True))
    state = s.up()
    yield state
    s.down()


@pytest.fixture
def gcloud(stack: StackState, tmp_path: Path) -> Gcloud:
    """gcloud in a shell that ran ``eval "$(tributary dev env)"``: the variables are read back from that shell."""
    script = f'eval "$("{TRIBUTARY}" dev env --state-dir "{stack.state_dir}")" && env'
    shell = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True, timeout=60)
    names = ("CLOUDSDK_", "PUBSUB_", "FIRESTORE_", "CLOUD_TASKS_", "CLOUD_SCHEDULER_", "GOOGLE_CLOUD_PROJECT")
    exported = dict(line.split("=", 1) for line in shell.stdout.splitlines() if line.startswith(names))
    assert exported["CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDTASKS"] == stack.endpoints["tasks_rest_url"] + "/"
    return Gcloud(tmp_path / "gcloud", exported)


def last_response(stack: StackState, task: str, timeout: float = 30.0) -> int:
    """The canonical code of the task's last answered attempt (3 for a 400, 16 for a 401)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attempt = httpx.get(f"{stack.endpoints['tasks_rest_url']}/v2/{task}").json().get("lastAttempt", {})
        if "responseStatus" in attempt:
            return int(attempt["responseStatus"].get("code", 0))
        time.sleep(0.2)
    raise AssertionError(f"{task} got no answer within {timeout} s")


def test_a_gcloud_task_reaches_ingest_with_its_token(stack: StackState, gcloud: Gcloud) -> None:
    gcloud("tasks", "queues", "create", "gcloud-check", *WHERE, "--min-backoff", "600s")  # a failed task stays
    queue = ("--queue", "gcloud-check", *WHERE)
    url = f"{stack.endpoints['ingest_url']}/gdelt"
    account = stack.env["TRIBUTARY_INVOKER_SERVICE_ACCOUNT"]
    signed = gcloud("tasks", "create-http-task", "signed", *queue, "--url", url, "--body-content", "{}",
                    "--header", "Content-Type: application/json", "--oidc-service-account-email", account)  # fmt: skip
    unsigned = gcloud("tasks", "create-http-task", "unsigned", *queue, "--url", url, "--body-content", "{}")
    assert last_response(stack, signed["name"]) == 3  # 400 invalid_task: past the token check, the body is empty
    assert last_response(stack, unsigned["name"]) == 16  # 401: ingest verifies tokens
    gcloud("tasks", "queues", "delete", "gcloud-check", *WHERE)


def test_a_gcloud_job_fires_on_its_cron_and_through_run(stack: StackState, gcloud: Gcloud) -> None:
    scheduler = stack.endpoints["scheduler_rest_url"]
    for job in httpx.get(f"{scheduler}/v1/projects/{stack.project}/locations/us-central1/jobs").json()["jobs"]:
        if job["state"] == "ENABLED":  # the stack's own schedules must not start ingestion here
            httpx.post(f"{scheduler}/v1/{job['name']}:pause", json={}).raise_for_status()
    gcloud("scheduler", "jobs", "create", "http", "gcloud-check", *WHERE, "--schedule", "* * * * *",
           "--uri", f"{stack.endpoints['api_url']}/healthz", "--http-method", "GET",
           "--oidc-service-account-email", stack.env["TRIBUTARY_INVOKER_SERVICE_ACCOUNT"])  # fmt: skip
    fired = httpx.post(f"{stack.endpoints['scheduler_admin_url']}/advance", json={"seconds": 60}, timeout=30).json()
    assert [(f["job"].rsplit("/", 1)[1], f["status"]) for f in fired["fired"]] == [("gcloud-check", 200)]
    gcloud("scheduler", "jobs", "run", "gcloud-check", *WHERE)
    described = gcloud("scheduler", "jobs", "describe", "gcloud-check", *WHERE)
    assert described["status"] == {} and described["lastAttemptTime"] > fired["now"]
