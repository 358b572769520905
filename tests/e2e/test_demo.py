"""`make demo` as a test: every registered source ingests its samples through the whole local stack."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from common.local.demo import run_demo
from common.local.stack import StackState

pytestmark = pytest.mark.e2e


def test_every_source_succeeds_offline_through_the_local_stack(tmp_path: Path) -> None:
    report = io.StringIO()
    quiet = Console(file=io.StringIO())
    assert run_demo(tmp_path, timeout=180, console=quiet, out=Console(file=report, width=200)), report.getvalue()
    from common.sources import all_sources

    text = report.getvalue()
    for source in all_sources():
        assert f"│ {source.name}" in text
    assert "failed" not in text
    assert StackState.load(tmp_path) is None, "the demo stops the stack it started"
    parquet = list((tmp_path / "data" / "normalized").rglob("*.parquet"))
    names = {s.name for s in all_sources()}
    assert {p.relative_to(tmp_path / "data" / "normalized").parts[0] for p in parquet} == names

    # The load stage: one table per source and stream, each holding exactly its Parquet rows (so, per source,
    # the job's records), and the report lists them.
    import pyarrow.parquet as pq

    from common.core.warehouse import table_name
    from common.runtime.embedded import DuckDBWarehouse

    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    written: dict[str, int] = {}
    for p in parquet:
        source, stream = p.relative_to(tmp_path / "data" / "normalized").parts[:2]
        written[table_name(source, stream)] = written.get(table_name(source, stream), 0) + pq.read_metadata(p).num_rows
    for table, rows in written.items():
        assert wh.query(f"select count(*) from {table}")[1] == [(rows,)], table
        assert f"│ {table}" in text
    assert "warehouse tables" in text
