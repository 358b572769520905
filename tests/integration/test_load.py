"""The load function in-process (functions-framework test client) on the Firestore emulator, loading into DuckDB."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app

from common.core.events import Event, EventData, EventType
from common.core.jobs import Job
from common.core.schema import Column
from common.gcp.firestore import create_job, get_job
from common.local.samples import HERE as SAMPLES
from common.runtime.embedded import DuckDBWarehouse
from common.runtime.ingest import write_parquet
from common.settings import reset_settings
from common.sources import get_source
from common.sources.base import Part
from tests.integration.test_functions import FUNCTIONS, push

SLOT = "20240115120000"


@pytest.fixture
def load(gcp: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TRIBUTARY_WAREHOUSE_PATH", str(tmp_path / "warehouse.duckdb"))
    reset_settings()
    return create_app("load", str(FUNCTIONS / "load.py"), "cloudevent").test_client()


def gdelt_outputs(root: Path, columns: tuple[Column, ...] | None = None) -> tuple[list[str], int]:
    """What a GDELT slot job writes: raw, Parquet (hive dt= folder) and the schema document."""
    gdelt = get_source("gdelt")
    base = root / "normalized" / "gdelt" / "events"
    parquet = base / "dt=2024-01-15" / f"{SLOT}.events.parquet"
    parquet.parent.mkdir(parents=True, exist_ok=True)
    items = gdelt.parse(
        io.BytesIO((SAMPLES / "gdelt" / f"{SLOT}.export.CSV").read_bytes()), Part(key="k", stream="events")
    )
    records, _ = write_parquet(items, columns or gdelt.schemas["events"], parquet)
    (base / "schema.json").write_text("[]")
    raw = root / "raw" / "gdelt" / "events" / "dt=2024-01-15" / f"{SLOT}.export.CSV.zip"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_bytes(b"zip")
    return [raw.as_uri(), "file://" + str(parquet), (base / "schema.json").as_uri()], records


def count(tmp_path: Path, table: str) -> int:
    return int(DuckDBWarehouse(tmp_path / "warehouse.duckdb").query(f"select count(*) from {table}")[1][0][0])


def test_a_succeeded_job_lands_in_its_table_once_and_shows_the_load(load: Any, tmp_path: Path) -> None:
    create_job(Job(job_id="gdelt-l1", source="gdelt"))
    outputs, records = gdelt_outputs(tmp_path / "data")
    done = Event.make(
        EventType.succeeded, EventData(job_id="gdelt-l1", source="gdelt", records=records, outputs=outputs)
    )
    assert push(load, done, "m1").status_code == 200
    assert push(load, done, "m2").status_code == 200  # redelivered, under a new message id
    assert count(tmp_path, "gdelt_events") == records
    job = get_job("gdelt-l1")
    assert job is not None and job.load is not None
    assert (job.load["status"], job.load["warehouse"], job.load["rows"]) == ("loaded", "duckdb", records)
    (table,) = job.load["tables"]
    assert table["table"] == "gdelt_events" and table["reused"] is True and table["load_id"].startswith("tributary_")


def test_parts_of_a_multi_part_job_load_from_their_progress_events(load: Any, tmp_path: Path) -> None:
    create_job(Job(job_id="gdelt-l2", source="gdelt"))
    outputs, records = gdelt_outputs(tmp_path / "data")
    other = tmp_path / "data2"
    outputs2, _ = gdelt_outputs(other)
    for key, outs in (("a", outputs), ("b", outputs2)):
        data = EventData(job_id="gdelt-l2", source="gdelt", records=records, outputs=outs, part=key)
        assert push(load, Event.make(EventType.progress, data, seq=key), key).status_code == 200
    # both parts wrote the same output name (one slot): replace-by-output keeps one copy
    assert count(tmp_path, "gdelt_events") == records
    job = get_job("gdelt-l2")
    assert job is not None and job.load is not None and len(job.load["tables"]) == 2


def test_a_renamed_column_fails_the_load_naming_it_and_is_acked(load: Any, tmp_path: Path) -> None:
    create_job(Job(job_id="gdelt-l3", source="gdelt"))
    outputs, records = gdelt_outputs(tmp_path / "data")
    first = Event.make(EventType.succeeded, EventData(job_id="gdelt-l3", source="gdelt", outputs=outputs))
    assert push(load, first, "m1").status_code == 200
    # The table now has the declared columns; the source renames one.
    gdelt = get_source("gdelt")
    renamed = tuple(Column("EventId", c.type) if c.name == "GLOBALEVENTID" else c for c in gdelt.schemas["events"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(type(gdelt).schemas, "events", renamed)  # type: ignore[index]
        create_job(Job(job_id="gdelt-l4", source="gdelt"))
        again = Event.make(EventType.succeeded, EventData(job_id="gdelt-l4", source="gdelt", outputs=outputs))
        assert push(load, again, "m3").status_code == 200  # permanent: recorded and acked, not redelivered
    job = get_job("gdelt-l4")
    assert job is not None and job.load is not None and job.load["status"] == "failed"
    assert "'GLOBALEVENTID'" in job.load["error"] and "EventId" in job.load["error"]
    assert count(tmp_path, "gdelt_events") == records


def test_events_without_parquet_outputs_and_unreadable_ones_are_acked(load: Any) -> None:
    started = Event.make(EventType.started, EventData(job_id="gdelt-l5", source="gdelt"))
    assert push(load, started).status_code == 200
    assert push(load, b"not json").status_code == 200
