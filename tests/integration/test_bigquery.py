"""The BigQuery warehouse against the BigQuery emulator (stock google-cloud-bigquery over REST, in process,
offline), and BigQuery's 409 on a duplicate job id against a small loopback fake of that REST call (the
emulator accepts a duplicate job id instead: docs/google-quirks.md)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from common.core.schema import Column
from common.core.warehouse import LINEAGE, LoadRule, Output, SchemaChangeError, load_id, parse_output
from common.gcp.bigquery import BigQueryWarehouse
from common.local.samples import HERE as SAMPLES
from common.runtime.ingest import write_parquet
from common.sources import get_source
from common.sources.base import Part
from tests.integration.bqemu import bigquery_emulator

PROJECT = "tributary-bq"


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    with bigquery_emulator(PROJECT) as url:
        yield url


@pytest.fixture
def bq(emulator: str, request: pytest.FixtureRequest) -> BigQueryWarehouse:
    """A warehouse in a dataset of this test's own."""
    return BigQueryWarehouse(project=PROJECT, dataset=f"d_{request.node.name[5:25]}", endpoint=emulator)


def write(tmp: Path, name: str, source: str, columns: tuple[Column, ...], items: Any) -> tuple[Output, int]:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    records, _ = write_parquet(items, columns, path)
    output = parse_output(path.as_uri().replace("%3D", "="), source)
    assert output is not None
    return output, records


def gdelt_slot(tmp: Path) -> tuple[Output, int]:
    gdelt = get_source("gdelt")
    data = (SAMPLES / "gdelt" / "20240115120000.export.CSV").read_bytes()
    items = gdelt.parse(io.BytesIO(data), Part(key="20240115120000.events", stream="events"))
    name = "normalized/gdelt/events/dt=2024-01-15/20240115120000.events.parquet"
    return write(tmp, name, "gdelt", gdelt.schemas["events"], items)


def count(bq: BigQueryWarehouse, table: str) -> int:
    return int(bq.query(f"select count(*) from {table}")[1][0][0])


def test_a_gdelt_slot_lands_once_in_a_partitioned_table(bq: BigQueryWarehouse, tmp_path: Path) -> None:
    gdelt = get_source("gdelt")
    output, records = gdelt_slot(tmp_path)
    cols, rule = gdelt.schemas["events"], gdelt.load_rule("events")
    first = bq.load(output, cols, rule, load_id("gdelt-1", output.name))
    assert (first.rows, first.table, first.job_id) == (records, "gdelt_events", load_id("gdelt-1", output.name))
    assert first.bytes > 0
    bq.load(output, cols, rule, load_id("gdelt-1", output.name))  # a redelivered job.succeeded
    bq.load(output, cols, rule, load_id("gdelt-2", output.name))  # the slot run again by a new job
    assert count(bq, "gdelt_events") == records
    assert bq.query("select distinct _tributary_dt from gdelt_events")[1] == [(date(2024, 1, 15),)]
    table = bq.client().get_table(f"{PROJECT}.{bq.dataset}.gdelt_events")
    assert (table.time_partitioning.field, table.time_partitioning.type_) == ("_tributary_dt", "DAY")
    assert [f.name for f in table.schema] == [c.name for c in (*cols, *LINEAGE)]


def obs(value: float) -> list[dict[str, Any]]:
    far = date(9999, 12, 31)
    return [
        {"series_id": "GDP", "date": date(2024, 1, 1), "realtime_start": date(2024, 4, 25), "realtime_end": far,
         "value": value},
        {"series_id": "GDP", "date": date(2023, 10, 1), "realtime_start": date(2024, 1, 25), "realtime_end": far,
         "value": 27.0},
    ]  # fmt: skip


def test_a_fred_revision_replaces_the_observation(bq: BigQueryWarehouse, tmp_path: Path) -> None:
    fred = get_source("fred")
    cols, rule = fred.schemas["observations"], fred.load_rule("observations")
    name = "normalized/fred/observations/partition=GDP/GDP.full.parquet"
    first, _ = write(tmp_path / "1", name, "fred", cols, iter(obs(28.0)))
    revised, _ = write(tmp_path / "2", name, "fred", cols, iter(obs(28.5)))
    bq.load(first, cols, rule, load_id("fred-1", first.name))
    bq.load(revised, cols, rule, load_id("fred-2", revised.name))
    bq.load(revised, cols, rule, load_id("fred-3", revised.name))
    assert count(bq, "fred_observations") == 2
    got = bq.query("select value from fred_observations where date = '2024-01-01'")[1]
    assert got == [(28.5,)]
    table = bq.client().get_table(f"{PROJECT}.{bq.dataset}.fred_observations")
    assert (table.time_partitioning.field, table.time_partitioning.type_) == ("date", "YEAR")
    assert table.clustering_fields == ["series_id", "date", "realtime_start"]


def test_a_renamed_column_fails_naming_it_and_an_added_one_is_allowed(bq: BigQueryWarehouse, tmp_path: Path) -> None:
    cols = (Column("id", "INT64", "REQUIRED"), Column("name", "STRING"))
    rule = LoadRule("merge", keys=("id",))
    out, _ = write(tmp_path, "normalized/demo/items/a.parquet", "demo", cols, iter([{"id": 1, "name": "a"}]))
    bq.load(out, cols, rule, load_id("j1", out.name))
    added = (*cols, Column("colour", "STRING"))
    out2, _ = write(tmp_path / "2", "normalized/demo/items/b.parquet", "demo", added, iter([{"id": 2, "colour": "r"}]))
    bq.load(out2, added, rule, load_id("j2", out2.name))
    assert sorted(bq.query("select id, colour from demo_items")[1]) == [(1, None), (2, "r")]
    renamed = (Column("id", "INT64", "REQUIRED"), Column("title", "STRING"), Column("colour", "STRING"))
    with pytest.raises(SchemaChangeError, match="column 'name'") as info:
        bq.load(out2, renamed, rule, load_id("j3", out2.name))
    assert info.value.column == "name"


def test_the_emulator_accepts_a_duplicate_job_id(bq: BigQueryWarehouse, tmp_path: Path) -> None:
    """A quirk, kept visible: BigQuery answers 409 (tested against the fake below); the emulator runs it again.
    The MERGE keeps the table right either way (the first test)."""
    from google.cloud import bigquery

    client = bq.client()
    bq.ensure_dataset()
    job_id = f"dup_{bq.dataset}"
    client.query("select 1", job_id=job_id, job_retry=None).result()
    client.query("select 1", job_id=job_id, job_retry=None).result()  # BigQuery: google.api_core Conflict
    assert isinstance(client.get_job(job_id), bigquery.QueryJob)


# ---- BigQuery's 409, on a loopback fake of the REST calls (the emulator cannot show it) ------------------------


class FakeBigQuery(BaseHTTPRequestHandler):
    """Answers as BigQuery does once both jobs of a load exist: every job insert is a 409, the jobs are DONE."""

    calls: list[tuple[str, str]] = []
    table: dict[str, Any] = {}

    def log_message(self, *_: Any) -> None:
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.calls.append(("GET", self.path))
        path = self.path.split("?", 1)[0]
        if "/tables/" in path:
            self._send(200, self.table)
        elif "/queries/" in path:
            job = path.rsplit("/", 1)[-1]
            ref = {"projectId": "p", "jobId": job, "location": "US"}
            self._send(200, {"jobComplete": True, "jobReference": ref, "totalRows": "0", "schema": {"fields": []}})
        elif "/jobs/" in path:
            job = path.rsplit("/", 1)[-1]
            ref = {"projectId": "p", "jobId": job, "location": "US"}
            done = {"state": "DONE"}
            if job.endswith("_apply"):
                config = {"query": {"query": "merge", "useLegacySql": False}}
                self._send(200, {"jobReference": ref, "configuration": config, "status": done, "statistics": {}})
            else:
                stats = {"load": {"outputRows": "24", "inputFileBytes": "1280"}}
                config = {"load": {"destinationTable": {"projectId": "p", "datasetId": "d", "tableId": "_s"}}}
                self._send(200, {"jobReference": ref, "configuration": config, "status": done, "statistics": stats})
        else:
            self._send(404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.calls.append(("POST", self.path))
        error = {"code": 409, "message": "Already Exists: Job p:US.x", "status": "ALREADY_EXISTS"}
        self._send(409, {"error": error})

    def do_DELETE(self) -> None:
        self.calls.append(("DELETE", self.path))
        self._send(404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}})


def test_a_redelivered_load_reuses_both_jobs_on_409(tmp_path: Path) -> None:
    """Against a loopback fake of BigQuery's REST API (the emulator accepts a duplicate job id): the load job and
    the MERGE are both refused with 409, and the load reports the existing job's rows, loading nothing again."""
    gdelt = get_source("gdelt")
    output, _ = gdelt_slot(tmp_path)
    cols = gdelt.schemas["events"]
    schema = [c.bigquery() for c in (*cols, *LINEAGE)]
    FakeBigQuery.calls = []
    FakeBigQuery.table = {
        "tableReference": {"projectId": "p", "datasetId": "d", "tableId": "gdelt_events"},
        "schema": {"fields": schema},
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeBigQuery)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        bq = BigQueryWarehouse(project="p", dataset="d", endpoint=f"http://127.0.0.1:{server.server_port}")
        result = bq.load(output, cols, gdelt.load_rule("events"), load_id("gdelt-1", output.name))
    finally:
        server.shutdown()
        server.server_close()
    assert result.reused and (result.rows, result.bytes) == (24, 1280)
    posts = [path for method, path in FakeBigQuery.calls if method == "POST"]
    assert len(posts) == 2 and "/upload/" in posts[0]  # the load (refused), then the MERGE (refused)
    lid = load_id("gdelt-1", output.name)
    assert any(method == "GET" and f"/jobs/{lid}?" in path for method, path in FakeBigQuery.calls)
    assert any(method == "GET" and f"/jobs/{lid}_apply?" in path for method, path in FakeBigQuery.calls)
