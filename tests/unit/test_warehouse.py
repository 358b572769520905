"""The warehouse port and its DuckDB adapter, on the bundled samples: load rules, idempotency, schema changes."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from common.core.errors import PermanentError
from common.core.schema import Column
from common.core.warehouse import (
    LoadRule,
    Output,
    SchemaChangeError,
    check_columns,
    hive_partition,
    load_id,
    output_date,
    parse_output,
    table_name,
)
from common.local.samples import HERE as SAMPLES
from common.runtime.embedded import DuckDBWarehouse
from common.runtime.ingest import write_parquet
from common.sources import get_source
from common.sources.base import Part


def parquet_of(tmp: Path, source: str, stream: str, sample: str, part: Part, name: str) -> tuple[Output, int]:
    """Parse a bundled sample with its source and write it as the normalized output ``name``."""
    src = get_source(source)
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    records, _ = write_parquet(src.parse(io.BytesIO((SAMPLES / sample).read_bytes()), part), src.schemas[stream], path)
    output = parse_output(path.as_uri(), source)
    assert output is not None
    return output, records


def rows_to_parquet(
    tmp: Path, name: str, source: str, columns: tuple[Column, ...], rows: list[dict[str, Any]]
) -> Output:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(iter(rows), columns, path)
    output = parse_output(path.as_uri(), source)
    assert output is not None
    return output


def count(wh: DuckDBWarehouse, table: str) -> int:
    return int(wh.query(f"select count(*) from {table}")[1][0][0])


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "warehouse.duckdb")


def gdelt_output(tmp_path: Path) -> tuple[Output, int]:
    part = Part(key="20240115120000.events", stream="events", partition="2024/01/15")
    name = "data/normalized/gdelt/events/dt=2024-01-15/20240115120000.events.parquet"
    return parquet_of(tmp_path, "gdelt", "events", "gdelt/20240115120000.export.CSV", part, name)


def test_gdelt_slot_loads_once_and_a_rerun_replaces_its_rows(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    output, records = gdelt_output(tmp_path)
    gdelt = get_source("gdelt")
    cols, rule = gdelt.schemas["events"], gdelt.load_rule("events")
    assert records > 0 and output.dt == date(2024, 1, 15)
    first = wh.load(output, cols, rule, load_id("gdelt-job1", output.name))
    assert (first.rows, first.reused, first.table) == (records, False, "gdelt_events")
    again = wh.load(output, cols, rule, load_id("gdelt-job1", output.name))  # a redelivered event
    assert again.reused and again.rows == records
    rerun = wh.load(output, cols, rule, load_id("gdelt-job2", output.name))  # the same slot, a new job
    assert not rerun.reused
    assert count(wh, "gdelt_events") == records
    assert wh.query("select distinct _tributary_dt from gdelt_events")[1] == [(date(2024, 1, 15),)]


def fred_rows(value: float) -> list[dict[str, Any]]:
    return [
        {
            "series_id": "GDP",
            "date": date(2024, 1, 1),
            "realtime_start": date(2024, 4, 25),
            "realtime_end": date(9999, 12, 31),
            "value": v,
        }
        for v in (value,)
    ] + [
        {
            "series_id": "GDP",
            "date": date(2023, 10, 1),
            "realtime_start": date(2024, 1, 25),
            "realtime_end": date(9999, 12, 31),
            "value": 27.0,
        }
    ]


def test_fred_revision_replaces_the_observation_and_a_rerun_adds_none(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    fred = get_source("fred")
    cols, rule = fred.schemas["observations"], fred.load_rule("observations")
    assert rule.mode == "merge" and rule.keys == ("series_id", "date", "realtime_start")
    part = Part(key="DFF.obs", stream="observations", partition="DFF", params={"series_id": "DFF"})
    sample, records = parquet_of(
        tmp_path,
        "fred",
        "observations",
        "fred/observations_DFF.json",
        part,
        "normalized/fred/observations/partition=DFF/a.parquet",
    )
    wh.load(sample, cols, rule, load_id("fred-1", sample.name))
    wh.load(sample, cols, rule, load_id("fred-2", sample.name))
    assert count(wh, "fred_observations") == records
    first = rows_to_parquet(
        tmp_path / "1", "normalized/fred/observations/partition=GDP/x.parquet", "fred", cols, fred_rows(28.0)
    )
    wh.load(first, cols, rule, load_id("fred-3", first.name))
    revised = rows_to_parquet(
        tmp_path / "2", "normalized/fred/observations/partition=GDP/x.parquet", "fred", cols, fred_rows(28.5)
    )
    wh.load(revised, cols, rule, load_id("fred-4", revised.name))
    assert count(wh, "fred_observations") == records + 2
    got = wh.query("select value from fred_observations where series_id = 'GDP' and date = '2024-01-01'")[1]
    assert got == [(28.5,)]


def test_ofac_snapshot_replaces_the_table(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    ofac = get_source("ofac")
    rule = ofac.load_rule("comments")
    assert (rule.mode, rule.scope) == ("replace", "table")
    cols = ofac.schemas["comments"]
    row = {"ent_num": 1, "remarks_extended": "x", "file_sha256": "a"}
    old = rows_to_parquet(
        tmp_path, "normalized/ofac/comments/partition=a/c.parquet", "ofac", cols, [row, {**row, "ent_num": 2}]
    )
    new = rows_to_parquet(
        tmp_path, "normalized/ofac/comments/partition=b/c.parquet", "ofac", cols, [{**row, "file_sha256": "b"}]
    )
    wh.load(old, cols, rule, load_id("ofac-1", old.name))
    wh.load(new, cols, rule, load_id("ofac-2", new.name))
    assert wh.query("select ent_num, file_sha256 from ofac_comments")[1] == [(1, "b")]


def test_adding_a_column_is_allowed_and_renaming_one_fails_naming_it(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    cols = (Column("id", "INT64", "REQUIRED"), Column("name", "STRING"))
    rule = LoadRule("merge", keys=("id",))
    out = rows_to_parquet(tmp_path, "normalized/demo/items/a.parquet", "demo", cols, [{"id": 1, "name": "a"}])
    wh.load(out, cols, rule, load_id("j1", out.name))
    added = (*cols, Column("colour", "STRING"))
    out2 = rows_to_parquet(
        tmp_path / "2", "normalized/demo/items/b.parquet", "demo", added, [{"id": 2, "name": "b", "colour": "red"}]
    )
    wh.load(out2, added, rule, load_id("j2", out2.name))
    assert wh.query("select id, colour from demo_items order by id")[1] == [(1, None), (2, "red")]
    renamed = (Column("id", "INT64", "REQUIRED"), Column("title", "STRING"), Column("colour", "STRING"))
    out3 = rows_to_parquet(
        tmp_path / "3", "normalized/demo/items/c.parquet", "demo", renamed, [{"id": 3, "title": "c"}]
    )
    with pytest.raises(SchemaChangeError, match="'name'") as info:
        wh.load(out3, renamed, rule, load_id("j3", out3.name))
    assert info.value.column == "name" and "title" in info.value.message
    assert count(wh, "demo_items") == 2  # the failed load changed nothing
    retyped = (Column("id", "STRING", "REQUIRED"), Column("name", "STRING"), Column("colour", "STRING"))
    with pytest.raises(SchemaChangeError, match="'id' changed type from INT64 to STRING"):
        wh.ensure_table("demo_items", retyped, rule)


def test_query_errors_are_one_line_permanent_errors(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="no warehouse"):
        wh.query("select 1")
    wh.ensure_table("t_x", (Column("a", "INT64"),), LoadRule())
    assert wh.query("select 1 as one") == (["one"], [(1,)])
    with pytest.raises(PermanentError) as info:
        wh.query("select * from missing_table")
    assert "\n" not in info.value.message and "missing_table" in info.value.message


def test_names_ids_and_paths() -> None:
    assert table_name("gdelt", "events") == "gdelt_events"
    assert load_id("gdelt-abc", "normalized/x.parquet") == load_id("gdelt-abc", "normalized/x.parquet")
    assert load_id("gdelt-abc", "normalized/x.parquet") != load_id("gdelt-abd", "normalized/x.parquet")
    assert load_id("a" * 200, "n").startswith("tributary_load_") and len(load_id("a" * 200, "n")) < 1024
    assert hive_partition("2024/01/15") == "dt=2024-01-15"
    assert hive_partition("DFF") == "partition=DFF"
    assert hive_partition("A/2022") == "partition=A-2022"
    assert hive_partition("") == ""
    assert output_date("normalized/gdelt/events/dt=2024-01-15/k.parquet") == date(2024, 1, 15)
    assert output_date("normalized/gdelt/events/2024/01/15/k.parquet") == date(2024, 1, 15)  # the older layout
    assert output_date("normalized/fred/observations/DFF/k.parquet") is None
    out = parse_output("gs://b/p/normalized/fred/observations/DFF/k.parquet", "fred")
    assert out is not None and (out.stream, out.name) == ("observations", "normalized/fred/observations/DFF/k.parquet")
    assert parse_output("file:///x/raw/fred/observations/DFF/k.json", "fred") is None
    assert parse_output("file:///x/normalized/fred/observations/schema.json", "fred") is None


def test_check_columns_allows_additions_only() -> None:
    cols = [Column("a", "INT64"), Column("b", "STRING")]
    lineage = {"_tributary_output": "STRING", "_tributary_dt": "DATE", "_tributary_loaded_at": "TIMESTAMP"}
    assert [c.name for c in check_columns("t", {"a": "INT64", **lineage}, cols)] == ["b"]
    with pytest.raises(SchemaChangeError, match="'c'"):
        check_columns("t", {"a": "INT64", "c": "STRING", **lineage}, cols)
    with pytest.raises(ValueError, match="key"):
        LoadRule("merge")
    assert replace(LoadRule("merge", keys=("a", "b", "c", "d", "e"))).clustering == ("a", "b", "c", "d")
