"""The cost model's Firestore counts are what the code does: a one-part job's whole path (api, ingest, status and
load functions in-process) on the Firestore emulator, every read and write counted at the client's API calls and
held equal to ``common.core.cost.firestore_ops``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app

from common.core.cost import events_of, firestore_ops
from common.core.events import EventType
from common.core.tasks import TaskPayload
from common.gcp.firestore import get_job, reads
from common.gcp.tasks import ensure_queue
from common.settings import reset_settings
from common.sources import get_source
from tests.conftest import pull_events
from tests.integration.test_functions import FUNCTIONS, push


class Metered:
    """Counts Firestore's billed operations at the generated client (every repository call passes it): a document
    read per document asked for, a query's documents (at least one), one per aggregation, a write per write of a
    commit."""

    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()

    @property
    def reads(self) -> int:
        return self.ops["reads"]

    @property
    def writes(self) -> int:
        return self.ops["writes"]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

        ops = self.ops
        batch_get, commit = FirestoreClient.batch_get_documents, FirestoreClient.commit
        run_query, aggregate = FirestoreClient.run_query, FirestoreClient.run_aggregation_query

        def batch_get_documents(client: Any, request: Any = None, **kw: Any) -> Any:
            ops["reads"] += len(request["documents"])
            return batch_get(client, request=request, **kw)

        def commit_(client: Any, request: Any = None, **kw: Any) -> Any:
            ops["writes"] += len(request.get("writes") or [])
            return commit(client, request=request, **kw)

        def run_query_(client: Any, request: Any = None, **kw: Any) -> Iterator[Any]:
            found = 0
            for response in run_query(client, request=request, **kw):
                found += bool(response.document and response.document.name)
                yield response
            ops["reads"] += max(found, 1)

        def run_aggregation_query(client: Any, request: Any = None, **kw: Any) -> Any:
            ops["reads"] += 1  # up to 1,000 index entries
            return aggregate(client, request=request, **kw)

        monkeypatch.setattr(FirestoreClient, "batch_get_documents", batch_get_documents)
        monkeypatch.setattr(FirestoreClient, "commit", commit_)
        monkeypatch.setattr(FirestoreClient, "run_query", run_query_)
        monkeypatch.setattr(FirestoreClient, "run_aggregation_query", run_aggregation_query)


@pytest.fixture
def noop(gcp: str, tasks_emulator: object, topic: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRIBUTARY_EXTRA_SOURCES", "tests.bench.noop:Noop")
    monkeypatch.setenv("TRIBUTARY_WAREHOUSE_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("TRIBUTARY_OUTPUT_URI", (tmp_path / "data").as_uri())
    reset_settings()
    ensure_queue(get_source("noop"))
    return topic


def test_a_one_part_no_op_job_costs_what_the_model_says(noop: tuple[str, str], monkeypatch) -> None:
    api = create_app("api", str(FUNCTIONS / "api.py")).test_client()
    ingest = create_app("ingest", str(FUNCTIONS / "ingest.py")).test_client()
    status = create_app("status", str(FUNCTIONS / "status.py"), "cloudevent").test_client()
    load = create_app("load", str(FUNCTIONS / "load.py"), "cloudevent").test_client()
    meter = Metered()
    meter.install(monkeypatch)

    created = api.post("/v1/jobs", json={"source": "noop", "params": {"run": "ops"}})
    assert created.status_code == 202, created.get_json()
    job_id = created.get_json()["job_id"]
    task = TaskPayload(job_id=job_id, source="noop", params={"run": "ops"}).model_dump_json()
    ran = ingest.post("/noop", data=task, headers={"X-CloudTasks-TaskRetryCount": "0"})
    assert ran.status_code == 200, ran.get_json()
    events = pull_events(noop[1], expect=2)
    assert [e.type for e in events] == [EventType.started, EventType.succeeded]  # type: ignore[attr-defined]
    for i, event in enumerate(events):  # each to both subscriptions, as Pub/Sub pushes it
        assert push(status, event, f"s{i}").status_code == 200
        assert push(load, event, f"l{i}").status_code == 200
    counted = (meter.reads, meter.writes)

    job = get_job(job_id)
    assert job is not None and job.status == "succeeded" and job.load is not None and job.load["status"] == "loaded"
    assert counted == firestore_ops(job, events_of(job)) == (3, 5)

    again = meter.ops.copy()
    for i, event in enumerate(events):  # redelivered: the markers in the job make them no-ops
        assert push(status, event, f"r{i}").status_code == 200
    assert (meter.reads - again["reads"], meter.writes - again["writes"]) == (2, 0)
    assert [e["type"] for e in reads.job_events(job_id)] == ["started", "succeeded"]
