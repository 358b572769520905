"""The local stack with the GCS and BigQuery emulators: a GDELT slot job writes gs:// outputs and ends with its
rows in BigQuery, and a redelivered job.succeeded loads nothing twice. Offline, all on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from common.core.events import Event, EventData, EventType
from common.gcp.bigquery import BigQueryWarehouse
from common.gcp.pubsub import publish
from common.local.samples import materialize
from common.local.stack import Stack, StackConfig, StackState, client_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackState]:
    tmp = tmp_path_factory.mktemp("bq-stack")
    s = Stack(
        StackConfig(
            state_dir=tmp / "stack",
            replay_dir=materialize(tmp / "replay"),
            auto_ports=True,
            scheduler=False,
            bigquery=True,
        )
    )
    state = s.up()
    yield state
    s.down()


def wait_for_load(api: httpx.Client, job_id: str, until: Any, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job["status"] == "failed" or until(job):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id}: no load after {timeout} s: {job}")


def test_a_gdelt_slot_ends_in_bigquery_once(stack: StackState) -> None:
    env = stack.env
    with httpx.Client(base_url=stack.endpoints["api_url"], timeout=30) as api:
        job_id = api.post("/v1/jobs", json={"source": "gdelt", "params": {}}).json()["job_id"]
        job = wait_for_load(api, job_id, lambda j: bool(j.get("load")))
        assert job["status"] == "succeeded" and job["load"]["status"] == "loaded", job
        assert all(o.startswith("gs://tributary-local/data/") for o in job["outputs"])
        assert any("/dt=2024-01-15/" in o and o.endswith(".parquet") for o in job["outputs"])
        bq = BigQueryWarehouse(project=env["TRIBUTARY_PROJECT"], dataset="tributary",
                               endpoint=env["TRIBUTARY_BIGQUERY_EMULATOR_HOST"])  # fmt: skip
        count = "select count(*) from gdelt_events"
        assert bq.query(count)[1] == [(job["records"],)] and job["load"]["rows"] == job["records"] > 0
        (table,) = job["load"]["tables"]
        assert table["job_id"] == table["load_id"] and table["table"] == "gdelt_events"
        # Pub/Sub delivers job.succeeded again (same event id): the load stage runs again and adds nothing. The
        # emulator accepts the reused job ids (BigQuery would answer 409), so the MERGE runs again: its rows'
        # load time moves, and the count does not.
        loaded_at = "select max(_tributary_loaded_at) from gdelt_events"
        first = bq.query(loaded_at)[1]
        data = EventData(job_id=job_id, source="gdelt", records=job["records"], outputs=job["outputs"])
        with client_env(env):
            publish(Event.make(EventType.succeeded, data))
        deadline = time.monotonic() + 60
        while bq.query(loaded_at)[1] == first and time.monotonic() < deadline:
            time.sleep(0.5)
        assert bq.query(loaded_at)[1] != first, "the redelivered event was not loaded again"
        assert bq.query(count)[1] == [(job["records"],)]
