"""Outputs on ``gs://`` as in production, on the GCS emulator: written by GcsStore, loaded by the load stage
into DuckDB, and into BigQuery on the BigQuery emulator, with the stock clients."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.gcp.bigquery import BigQueryWarehouse
from common.gcp.clients import reset_clients
from common.gcp.objects import GcsStore, local_copy
from common.local.samples import HERE as SAMPLES
from common.runtime.embedded import DuckDBWarehouse
from common.runtime.ingest import write_parquet
from common.runtime.load import load_outputs
from common.settings import reset_settings
from common.sources import get_source
from common.sources.base import Part
from tests.integration.bqemu import bigquery_emulator
from tests.integration.gcsemu import gcs_emulator

BUCKET = "tributary-load"


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with gcs_emulator(BUCKET) as url:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        monkeypatch.setenv("TRIBUTARY_PROJECT", "t-load")
        reset_settings()
        reset_clients()
        yield url
        reset_clients()


def gdelt_slot_on_gcs(tmp_path: Path) -> tuple[list[str], int]:
    """A GDELT slot job's outputs, written as the ingest writes them (GcsStore, hive dt= folder)."""
    gdelt = get_source("gdelt")
    local = tmp_path / "slot.parquet"
    items = gdelt.parse(
        io.BytesIO((SAMPLES / "gdelt" / "20240115120000.export.CSV").read_bytes()), Part(key="k", stream="events")
    )
    records, _ = write_parquet(items, gdelt.schemas["events"], local)
    store = GcsStore(f"gs://{BUCKET}/v1")
    uri = store.put_file(local, "normalized/gdelt/events/dt=2024-01-15/20240115120000.events.parquet")
    schema = store.put_bytes(b"[]", "normalized/gdelt/events/schema.json", "application/json")
    return [uri, schema], records


def test_a_gs_output_is_read_back_and_a_missing_one_is_a_permanent_error(gcs: str, tmp_path: Path) -> None:
    from common.core.errors import PermanentError

    (uri, _), _ = gdelt_slot_on_gcs(tmp_path)
    assert uri == f"gs://{BUCKET}/v1/normalized/gdelt/events/dt=2024-01-15/20240115120000.events.parquet"
    with local_copy(uri) as path:
        assert path.read_bytes()[:4] == b"PAR1"
    assert not path.exists()  # the download is removed afterwards
    with pytest.raises(PermanentError, match="does not exist"), local_copy(f"gs://{BUCKET}/v1/nothing.parquet"):
        pass


def test_a_gdelt_slot_on_gcs_loads_into_duckdb_once(gcs: str, tmp_path: Path) -> None:
    outputs, records = gdelt_slot_on_gcs(tmp_path)
    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    first = load_outputs("gdelt-g1", "gdelt", outputs, wh)
    again = load_outputs("gdelt-g1", "gdelt", outputs, wh)
    assert first.rows == again.rows == records and again.tables[0]["reused"] is True
    assert wh.query("select count(*) from gdelt_events")[1] == [(records,)]


def test_a_gdelt_slot_on_gcs_loads_into_bigquery_once(gcs: str, tmp_path: Path) -> None:
    """The BigQuery emulator cannot read gs:// from the GCS emulator, so the load uploads the Parquet it
    downloads (``load_table_from_file``); on Google, a gs:// output is loaded by URI."""
    outputs, records = gdelt_slot_on_gcs(tmp_path)
    with bigquery_emulator("t-load") as url:
        bq = _ByUpload(project="t-load", dataset="tributary", endpoint=url)
        first = load_outputs("gdelt-g2", "gdelt", outputs, bq)
        load_outputs("gdelt-g2", "gdelt", outputs, bq)  # a redelivered job.succeeded
        assert first.rows == records
        assert bq.query("select count(*) from gdelt_events")[1] == [(records,)]


class _ByUpload(BigQueryWarehouse):
    """Loads gs:// outputs by download and upload (the emulators do not share a bucket)."""

    def load(self, output, columns, rule, load_id):  # type: ignore[no-untyped-def]
        from dataclasses import replace

        with local_copy(output.uri) as path:
            return super().load(replace(output, uri=path.as_uri()), columns, rule, load_id)
