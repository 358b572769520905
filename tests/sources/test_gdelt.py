"""GDELT: the parser on the project's samples and on real files, listings, params, fetch verification."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from common.core.errors import BadParams, PermanentError, TransientError
from common.core.schema import arrow_schema
from common.gcp.objects import LocalStore
from common.local.recorded import ReplayServer
from common.local.samples import HERE as SAMPLES
from common.runtime.ingest import run_part, write_parquet
from common.sources.base import Context, SourceState, iter_records
from common.sources.gdelt import EVENTS, GKG, MENTIONS, Gdelt, parse_file_list, parse_tsv
from common.sources.http import Http
from tests.conftest import fixture_path
from tests.sources.gdelt_helpers import gdelt_replay_dir, slot_csv

SAMPLE = SAMPLES / "gdelt" / "20240115120000.export.CSV"


def zipped(data: bytes, name: str = "x.export.CSV") -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    buf.seek(0)
    return buf


def rows(data: bytes, columns=EVENTS) -> list[dict]:
    return list(iter_records(parse_tsv(zipped(data), columns)))


# ---- the project's own sample ---------------------------------------------------------------------
def test_sample_parses_to_typed_records() -> None:
    records = rows(SAMPLE.read_bytes())
    assert len(records) == 24
    first = records[0]
    assert first["GLOBALEVENTID"] == 1150000000 and isinstance(first["GLOBALEVENTID"], int)
    assert first["EventCode"] == "1724" and first["EventRootCode"] == "17"
    assert isinstance(first["AvgTone"], float)
    assert first["Actor2Code"] is None, "empty fields land as NULL, not ''"
    assert first["SOURCEURL"].startswith("https://")


def test_leading_zero_event_codes_survive() -> None:
    codes = [r["EventCode"] for r in rows(SAMPLE.read_bytes())]
    assert "0231" in codes and "043" in codes
    assert sum(c.startswith("0") for c in codes) == 16


def test_unzipped_input_is_accepted_too() -> None:
    assert sum(b.num_rows for b in parse_tsv(io.BytesIO(SAMPLE.read_bytes()), EVENTS)) == 24


def test_wrong_column_count_is_a_permanent_error_naming_the_problem() -> None:
    bad = b"\t".join([b"1"] * 58) + b"\n"
    with pytest.raises(PermanentError, match="61 columns"):
        rows(bad)


def test_non_numeric_id_is_a_permanent_error() -> None:
    line = SAMPLE.read_bytes().splitlines()[0].split(b"\t")
    line[0] = b"not-a-number"
    with pytest.raises(PermanentError, match="not a valid GDELT file"):
        rows(b"\t".join(line) + b"\n")


def test_truncated_zip_is_a_permanent_error() -> None:
    data = zipped(SAMPLE.read_bytes() * 50).getvalue()
    with pytest.raises(PermanentError, match="zip"):
        list(parse_tsv(io.BytesIO(data[: len(data) // 2]), EVENTS))


def test_zip_with_two_members_is_rejected() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.CSV", SAMPLE.read_bytes())
        z.writestr("b.CSV", SAMPLE.read_bytes())
    buf.seek(0)
    with pytest.raises(PermanentError, match="one file"):
        list(parse_tsv(buf, EVENTS))


def test_small_batches_are_gathered_into_row_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row group per Arrow batch made files 3x larger and writes 1.6x slower (common/runtime/ingest.py)."""
    import pyarrow as pa

    from common.runtime import ingest

    table = pa.Table.from_pylist(rows(SAMPLE.read_bytes()), schema=arrow_schema(EVENTS))
    batches = table.to_batches(max_chunksize=2)  # many tiny batches, as a streamed parse yields
    assert len(batches) > 10
    out = tmp_path / "one.parquet"
    assert write_parquet(iter(batches), EVENTS, out) == (table.num_rows, 0)
    assert pq.ParquetFile(out).metadata.num_row_groups == 1
    assert pq.read_table(out).equals(table)

    # Past ROW_GROUP_BYTES a group is written and the next one begins: memory stays bounded.
    monkeypatch.setattr(ingest, "ROW_GROUP_BYTES", batches[0].nbytes * 3)
    out = tmp_path / "many.parquet"
    assert write_parquet(iter(batches), EVENTS, out) == (table.num_rows, 0)
    groups = pq.ParquetFile(out).metadata.num_row_groups
    assert 1 < groups <= len(batches)
    assert pq.read_table(out).equals(table)


# ---- real files (../shared/fixtures) --------------------------------------------------------------
def test_real_full_slot_has_2111_rows_and_keeps_leading_zeros() -> None:
    data = fixture_path("gdelt", "20191024143000.export.CSV").read_bytes()
    records = rows(data)
    assert len(records) == 2111
    assert {r["DATEADDED"] for r in records} == {20191024143000}
    assert [r["GLOBALEVENTID"] for r in records] == list(range(881990832, 881992943))
    codes = [r["EventCode"] for r in records]
    assert sum(c.startswith("0") for c in codes) == 1503
    for r in records:
        assert r["EventBaseCode"] == r["EventCode"][:3] or len(r["EventCode"]) == 3
        assert r["EventRootCode"] == r["EventCode"][:2]


def test_real_full_slot_values_match_the_file() -> None:
    data = fixture_path("gdelt", "20191024143000.export.CSV").read_bytes()
    raw_first = data.splitlines()[0].decode().split("\t")
    first = rows(data)[0]
    assert [first[c.name] if first[c.name] is not None else "" for c in EVENTS[:5]] == [
        881990832,
        20181024,
        201810,
        2018,
        2018.8055,
    ]
    assert first["ActionGeo_FullName"] == raw_first[52]
    assert first["SOURCEURL"] == raw_first[60]


@pytest.mark.parametrize(
    ("name", "columns", "count"),
    [
        ("events.csv", EVENTS, 100),
        ("eventsT.csv", EVENTS, 100),
        ("mentions.csv", MENTIONS, 100),
        ("mentionsT.csv", MENTIONS, 100),
        ("gkg.csv", GKG, 100),
        ("gkgT.csv", GKG, 100),
    ],
)
def test_real_excerpts_of_each_stream(name: str, columns, count: int) -> None:
    data = fixture_path("gdelt", "aamend-spark-gdelt", name).read_bytes()
    records = rows(data, columns)
    assert len(records) == count
    assert all(len(r) == len(columns) for r in records)


def test_gdelt_1_files_are_rejected_as_the_wrong_format() -> None:
    data = fixture_path("gdelt", "reed9999-gdelt-demo", "DERIVED_split_lines1-509_gdelt1_daily_20160728_58col.tsv")
    with pytest.raises(PermanentError, match="61 columns"):
        rows(data.read_bytes())


def test_real_master_list_parses_every_line() -> None:
    text = fixture_path("gdelt", "index_files", "masterfilelist_v2_head1000.txt").read_text()
    listed = list(parse_file_list(text))
    assert len(listed) == 1000
    assert listed[0] == (
        150383,
        "297a16b493de7cf6ca809a7cc31d0b93",
        "http://data.gdeltproject.org/gdeltv2/20150218230000.export.CSV.zip",
    )
    assert {url.rsplit(".", 3)[-3] for _, _, url in listed} >= {"export", "mentions", "gkg"}


def test_lastupdate_format_example_parses() -> None:
    text = fixture_path("gdelt", "index_files", "lastupdate_FORMAT_EXAMPLE_derived_from_masterfilelist.txt").read_text()
    kinds = [url.split(".")[-3] for _, _, url in parse_file_list(text)]
    assert kinds == ["export", "mentions", "gkg"]


# ---- params ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"slot": "20240115121000"}, "params.slot"),
        ({"slot": "2024011512"}, "params.slot"),
        ({"slot": "20140101000000"}, "params.slot"),
        ({"streams": ["events", "nope"]}, "params.streams.1"),
        ({"streams": []}, "params.streams"),
        ({"slots": "20240115120000"}, "params.slots"),
    ],
)
def test_bad_params_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(BadParams) as info:
        Gdelt().validate_params(params)
    assert info.value.field == field
    assert field in info.value.message


def test_latest_is_one_job_per_15_minute_window() -> None:
    g = Gdelt()
    p = g.validate_params({})
    at = lambda h, m: datetime(2024, 1, 15, h, m, tzinfo=UTC)  # noqa: E731
    assert g.dedup_params(p, at(12, 1)) == g.dedup_params(p, at(12, 14))
    assert g.dedup_params(p, at(12, 14)) != g.dedup_params(p, at(12, 15))
    explicit = g.validate_params({"slot": "20240115120000"})
    assert g.dedup_params(explicit, at(12, 1)) == g.dedup_params(explicit, at(18, 0))


# ---- plan, fetch and verification through a replay server -----------------------------------------
def _ctx(server: ReplayServer, tmp_path: Path) -> Context:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Context(
        http=Http(), base_url=f"{server.url}/gdelt", workdir=work, state=SourceState(), now=datetime.now(UTC)
    )


def test_plan_fetch_and_write_a_slot(tmp_path: Path) -> None:
    root = gdelt_replay_dir(tmp_path / "replay", [SAMPLE])
    store = LocalStore(tmp_path / "out")
    with ReplayServer(root) as server:
        g = Gdelt()
        parts = g.plan(g.validate_params({}), _ctx(server, tmp_path))
        assert [p.key for p in parts] == ["20240115120000.events"]
        result = run_part(g, parts[0], _ctx(server, tmp_path), store)
    assert result.records == 24
    assert result.watermark == "20240115120000"
    table = pq.read_table(tmp_path / "out/normalized/gdelt/events/dt=2024-01-15/20240115120000.events.parquet")
    assert table.num_rows == 24
    assert table.schema.field("EventCode").type == "string"
    assert (tmp_path / "out/raw/gdelt/events/dt=2024-01-15/20240115120000.export.CSV.zip").exists()
    assert (tmp_path / "out/normalized/gdelt/events/schema.json").exists()


def test_a_second_run_overwrites_instead_of_adding(tmp_path: Path) -> None:
    root = gdelt_replay_dir(tmp_path / "replay", [SAMPLE])
    out = tmp_path / "out"
    with ReplayServer(root) as server:
        g = Gdelt()
        for _ in range(2):
            parts = g.plan(g.validate_params({"slot": "20240115120000"}), _ctx(server, tmp_path))
            run_part(g, parts[0], _ctx(server, tmp_path), LocalStore(out))
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(files) == 3, files
    (parquet,) = out.rglob("*.parquet")
    assert pq.read_table(parquet).num_rows == 24


def test_md5_mismatch_is_permanent_and_says_so(tmp_path: Path) -> None:
    root = gdelt_replay_dir(tmp_path / "replay", [SAMPLE], corrupt_md5_of="20240115120000")
    with ReplayServer(root) as server:
        g = Gdelt()
        parts = g.plan(g.validate_params({}), _ctx(server, tmp_path))
        with pytest.raises(PermanentError, match=r"md5 \w+ does not match the listed 0{32}"):
            g.fetch(parts[0], _ctx(server, tmp_path))


def test_an_older_slot_is_found_in_the_master_list(tmp_path: Path) -> None:
    old = slot_csv(tmp_path, "20240115114500", SAMPLE)
    root = gdelt_replay_dir(tmp_path / "replay", [old, SAMPLE])
    (root / "gdelt/lastupdate.txt").write_text(
        "\n".join(line for line in (root / "gdelt/lastupdate.txt").read_text().splitlines() if "1145" not in line)
    )
    with ReplayServer(root) as server:
        g = Gdelt()
        parts = g.plan(g.validate_params({"slot": "20240115114500"}), _ctx(server, tmp_path))
        assert parts[0].params["file"] == "20240115114500.export.CSV.zip"
        assert server.hits["/gdelt/masterfilelist.txt"] == 1


def test_a_slot_that_was_never_published_fails_clearly(tmp_path: Path) -> None:
    """A gap: older than the newest slot, and in no list (real gaps exist)."""
    root = gdelt_replay_dir(tmp_path / "replay", [SAMPLE])
    with ReplayServer(root) as server:
        g = Gdelt()
        with pytest.raises(PermanentError, match="20240115114500 is not in masterfilelist"):
            g.plan(g.validate_params({"slot": "20240115114500"}), _ctx(server, tmp_path))


# ---- a hint never decides another caller's job (RELIABILITY.md, trust boundaries) ---------------------
FORGED = {"events": [1, "0" * 32]}


@pytest.mark.parametrize("params", [{"expected": FORGED}, {"slot": "20240115120000", "expected": FORGED}])
def test_callers_cannot_pass_the_planners_hint(params: dict) -> None:
    with pytest.raises(BadParams) as info:
        Gdelt().validate_params(params)
    assert info.value.field == "params.expected"


def test_the_hint_is_not_in_the_public_params_schema() -> None:
    assert "expected" not in Gdelt.params_model.model_json_schema()["properties"]


def test_a_future_slot_is_refused() -> None:
    with pytest.raises(BadParams, match="future") as info:
        Gdelt().validate_params({"slot": "20991231234500"})
    assert info.value.field == "params.slot"


def test_a_slot_newer_than_the_listing_is_retried_not_failed(tmp_path: Path) -> None:
    root = gdelt_replay_dir(tmp_path / "replay", [SAMPLE])
    with ReplayServer(root) as server:
        g = Gdelt()
        with pytest.raises(TransientError, match="20240115130000 is not published yet"):
            g.plan(g.validate_params({"slot": "20240115130000"}), _ctx(server, tmp_path))


def test_a_wrong_hint_is_checked_against_the_listing_and_does_not_fail_the_job(tmp_path: Path) -> None:
    root = gdelt_replay_dir(tmp_path / "replay", [SAMPLE])
    with ReplayServer(root) as server:
        g = Gdelt()
        params = g.validate_params({"slot": "20240115120000", "expected": FORGED}, trusted=True)
        (part,) = g.plan(params, _ctx(server, tmp_path))
        assert (part.params["size"], part.params["hinted"]) == (1, True)
        raw = g.fetch(part, _ctx(server, tmp_path))
    assert raw.size > 1


def test_a_hint_leaves_the_job_identity_alone() -> None:
    g, now = Gdelt(), datetime(2024, 1, 15, 12, 20, tzinfo=UTC)
    hinted = g.validate_params({"slot": "20240115120000", "expected": FORGED}, trusted=True)
    plain = g.validate_params({"slot": "20240115120000"})
    assert g.dedup_params(hinted, now) == g.dedup_params(plain, now)
