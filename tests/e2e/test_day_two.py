"""A new user's day two on the local stack (``tributary dev up --samples``), through the CLI: a FRED job fails for
want of a key, the key is set, the job is retried and succeeds with both runs shown; a queued and a running
multi-part job are cancelled; a queue is paused, purged and resumed."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from common.local.samples import materialize
from common.local.stack import Stack, StackConfig
from common.ops.cli import app

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # As `tributary dev up --samples` from a project folder: the CLI finds the stack in ./.tributary/dev.
    monkeypatch.chdir(tmp_path)
    config = StackConfig(
        state_dir=tmp_path / ".tributary" / "dev",
        replay_dir=materialize(tmp_path / "replay"),
        auto_ports=True,
        scheduler=False,
        secret_placeholders=False,
    )
    s = Stack(config)
    state = s.up()
    yield state
    s.down()


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output)
    assert "target: local stack" in result.output
    return json.loads(result.stdout) if result.stdout.strip() else None


def wait(api: httpx.Client, job_id: str, want: set[str], timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in want:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} is {job.get('status')}, not {want}, after {timeout} s: {job}")


def test_day_two_retry_cancel_queues_and_a_secret_set_while_the_stack_runs(stack) -> None:
    api = httpx.Client(base_url=stack.endpoints["api_url"], timeout=30)
    # 1. A FRED job fails for want of its key; the error says what to run.
    job_id = api.post("/v1/jobs", json={"source": "fred", "params": {"series": ["DFF", "GDP"]}}).json()["job_id"]
    failed = wait(api, job_id, {"failed", "succeeded"})
    assert failed["status"] == "failed", failed
    message = failed["error"]["message"]
    assert "`tributary secrets set FRED_API_KEY VALUE`" in message and f"`tributary jobs retry {job_id}`" in message
    # 2. The key, set with the CLI on the running stack (no restart), then the retry: the same job succeeds.
    cli("secrets", "set", "FRED_API_KEY", "any-key-the-samples-accept")
    cli("jobs", "retry", job_id)
    done = wait(api, job_id, {"failed", "succeeded", "cancelled"})
    assert done["status"] == "succeeded" and done["records"] > 0, done
    assert [(r["run"], r["status"]) for r in done["runs"]] == [(1, "failed"), (2, "succeeded")]
    assert "FRED_API_KEY" in done["runs"][0]["error"]["message"]

    # 3. A queued job cancelled: its task goes, and it never runs.
    cli("queues", "pause", "worldbank")
    params = {"indicators": ["NY.GDP.PCAP.CD"], "countries": ["BRA", "IND", "NGA"]}
    queued = api.post("/v1/jobs", json={"source": "worldbank", "params": params}).json()
    assert cli("jobs", "cancel", queued["job_id"])["status"] == "cancelled"
    queues = {q["source"]: q for q in cli("queues", "list", "--json")}
    assert queues["worldbank"]["state"] == "PAUSED"
    # 4. Pause, purge, resume: a job left queued by a purge is still there to cancel or to be re-enqueued.
    other = api.post("/v1/jobs", json={"source": "worldbank", "params": {**params, "countries": ["BRA"]}}).json()
    cli("queues", "purge", "worldbank")
    cli("queues", "resume", "worldbank")
    time.sleep(1.5)
    assert api.get(f"/v1/jobs/{other['job_id']}").json()["status"] == "queued", "its task was purged"
    assert api.get(f"/v1/jobs/{queued['job_id']}").json()["status"] == "cancelled"
    conflict = CliRunner().invoke(app, ["jobs", "cancel", queued["job_id"]])
    assert conflict.exit_code == 1 and "409 job_not_cancellable" in conflict.output

    # 5. A running multi-part job cancelled: each part's upstream answers after 20 s (until the faults are
    # removed), so however loaded the machine, the job is still running when the cancel comes.
    replay = stack.endpoints["replay_url"]
    slow = {"path": "/fred/series/observations", "mode": "slow", "delay": 20}
    httpx.post(f"{replay}/_replay/faults", json=[slow]).raise_for_status()
    series = ["DFF", "DGS10", "GDP", "UNRATE"]
    running_id = api.post("/v1/jobs", json={"source": "fred", "params": {"series": series}}).json()["job_id"]
    wait(api, running_id, {"running"}, timeout=30)
    cancelled = cli("jobs", "cancel", running_id)
    assert cancelled["status"] == "cancelled"
    time.sleep(1.0)  # a part dispatched just before the cancel has read the job by now (and stops, or fetched)
    hits = httpx.get(f"{replay}/_replay/hits").json()
    time.sleep(3.0)  # a part already running may finish; no other starts
    after = httpx.get(f"{replay}/_replay/hits").json()
    job = api.get(f"/v1/jobs/{running_id}").json()
    assert (job["status"], job["records"]) == ("cancelled", 0), job
    assert after == hits, "no part started after the cancel"
    httpx.delete(f"{replay}/_replay/faults").raise_for_status()
    api.close()
