"""OFAC SDN: the parser on the project's samples and on the real files, params, plan/dedup, fetch + write."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from common.core.errors import BadParams, PermanentError, TransientError
from common.gcp.objects import LocalStore
from common.local.recorded import ReplayServer
from common.local.samples import HERE as SAMPLES
from common.local.samples import materialize
from common.runtime.ingest import load_secrets, run_part
from common.sources.base import Context, Part, SourceState
from common.sources.http import Http
from common.sources.ofac import (
    ALL_STREAMS,
    DEFAULT_BASE_URL,
    STREAMS,
    Ofac,
    OfacParams,
    cursor_sha256,
    cursor_value,
    parse_csv,
)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
SAMPLE_DIR = SAMPLES / "ofac"
NOW = datetime(2024, 1, 15, 12, 34, 56, tzinfo=UTC)
SEEN = "2024-01-15T12:34:56Z"
SOURCE = Ofac()
#: Records in the project's samples, per stream.
SAMPLE_COUNTS = {"sdn": 6, "add": 6, "alt": 5, "comments": 1}


def real(name: str) -> Path:
    path = FIXTURES / "ofac" / name
    if not path.exists():
        pytest.skip(f"../shared/fixtures not present: {path} is needed for real-data conformance")
    return path


def parse_bytes(data: bytes, stream: str = "sdn", seen_at: str | None = SEEN) -> list[dict]:
    return list(parse_csv(io.BytesIO(data), STREAMS[stream], seen_at=seen_at))


def parse_file(path: Path, stream: str) -> list[dict]:
    with path.open("rb") as f:
        return list(parse_csv(f, STREAMS[stream], seen_at=SEEN))


def sample(stream: str) -> Path:
    return SAMPLE_DIR / STREAMS[stream].file


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplayServer]:
    """One replay server for the module; each test serves its own copy of the samples under its own prefix."""
    with ReplayServer(tmp_path_factory.mktemp("replay")) as server:
        yield server


@dataclass
class Site:
    """This test's upstream: ``<replay>/<name>/`` holds the files, ``url`` is the source's base URL."""

    server: ReplayServer
    name: str

    @property
    def dir(self) -> Path:
        return self.server.root / self.name

    @property
    def url(self) -> str:
        return f"{self.server.url}/{self.name}"

    def hits(self) -> dict[str, int]:
        prefix = f"/{self.name}"
        return {p.removeprefix(prefix): n for p, n in self.server.hits.items() if p.startswith(prefix + "/")}


@pytest.fixture
def site(replay: ReplayServer) -> Site:
    """The samples, served under a prefix of this test's own (tests may change or break them)."""
    here = Site(replay, f"ofac-{uuid.uuid4().hex[:8]}")
    shutil.copytree(SAMPLE_DIR, here.dir)
    return here


def make_ctx(http: Http, base_url: str, workdir: Path, cursors: dict[str, str] | None = None, now=NOW) -> Context:
    workdir.mkdir(parents=True, exist_ok=True)
    return Context(
        http=http, base_url=base_url, workdir=workdir, state=SourceState(cursors=dict(cursors or {})), now=now
    )


def tree(root: Path) -> dict[str, float]:
    """Every stored object and its modification time (to prove a run wrote nothing)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def parquet_rows(root: Path, stream: str) -> int:
    return sum(pq.read_metadata(p).num_rows for p in (root / "normalized" / "ofac" / stream).glob("*.parquet"))


# ---- 1. the project's own samples --------------------------------------------------------------------------
@pytest.mark.parametrize("stream", ALL_STREAMS)
def test_sample_record_counts(stream: str) -> None:
    assert len(parse_file(sample(stream), stream)) == SAMPLE_COUNTS[stream]


def test_sample_sdn_is_typed_with_nulls_as_none() -> None:
    records = {r["ent_num"]: r for r in parse_file(sample("sdn"), "sdn")}
    assert list(records) == [1001, 1002, 1003, 1004, 1005, 1006]
    entity = records[1001]
    assert entity["sdn_name"] == "EXAMPLE TRADING CO., LTD.", "commas inside quotes stay in the value"
    assert entity["sdn_type"] is None, "entities have no type: the -0- marker becomes NULL"
    assert entity["remarks"] is None and entity["title"] is None
    vessel = records[1003]
    assert vessel["sdn_type"] == "vessel" and vessel["program"] == "IRAN] [SDGT"
    assert vessel["tonnage"] == "12,345" and vessel["grt"] == "8,000", "tonnage is text in OFAC's spec"
    assert vessel["call_sign"] == "9XAB1" and vessel["vess_owner"] == "EXAMPLE SHIPPING S.A."
    assert records[1006]["title"] == "Former Minister of Examples"
    assert records[1005]["remarks"].startswith("Tax ID No. 12-0-345-678"), "-0- inside a value is not NULL"
    for r in records.values():
        assert isinstance(r["ent_num"], int)
        assert r["file_sha256"] == sha(sample("sdn"))
        assert r["file_seen_at"] == datetime(2024, 1, 15, 12, 34, 56, tzinfo=UTC)


@pytest.mark.parametrize("stream", ALL_STREAMS)
def test_every_null_marker_and_only_those_become_none(stream: str) -> None:
    records = parse_file(sample(stream), stream)
    nulls = sum(v is None for r in records for k, v in r.items() if k != "file_seen_at")
    assert nulls == sample(stream).read_bytes().count(b"-0- ,") + sample(stream).read_bytes().count(b"-0- \r\n")
    assert not any(isinstance(v, str) and v.strip() == "-0-" for r in records for v in r.values())


def test_sample_add_and_alt_values() -> None:
    add = parse_file(sample("add"), "add")
    assert add[1] == {
        "ent_num": 1001,
        "add_num": 502,
        "address": "Calle Ejemplo 1, Oficina 2",
        "city_state_postal_code": "Madrid 28001",
        "country": "Spain",
        "add_remarks": None,
        "file_sha256": sha(sample("add")),
        "file_seen_at": datetime(2024, 1, 15, 12, 34, 56, tzinfo=UTC),
    }
    assert [r["alt_type"] for r in parse_file(sample("alt"), "alt")] == ["aka", "aka", "fka", "nka", "aka"]


def test_remarks_overflow_continues_verbatim_in_comments() -> None:
    sdn = {r["ent_num"]: r for r in parse_file(sample("sdn"), "sdn")}
    (comment,) = parse_file(sample("comments"), "comments")
    assert len(sdn[comment["ent_num"]]["remarks"]) == 1000
    assert comment["remarks_extended"].startswith(" "), "values are never trimmed: the cut fell before a space"
    full = sdn[comment["ent_num"]]["remarks"] + comment["remarks_extended"]
    assert "Linked To: FICTIONAL SUBSIDIARY 24 LLC; Linked To: FICTIONAL SUBSIDIARY 25 LLC" in full
    assert full.endswith("FICTIONAL SUBSIDIARY 39 LLC.")


def test_line_endings_and_eof_byte_variants_parse_the_same() -> None:
    data = sample("sdn").read_bytes()
    assert data.endswith(b"\r\n\x1a")
    expected = parse_bytes(data)
    body = data[:-1]
    variants = [
        body,  # no end-of-file byte
        body[:-2] + b"\x1a",  # the byte glued to the last record
        body.replace(b"\r\n", b"\n"),  # LF only
        body.replace(b"\r\n", b"\r") + b"\x1a",  # CR only, as the data specification describes
        body + b"\r\n",  # a trailing blank line
    ]
    for variant in variants:
        got = parse_bytes(variant)
        assert [{k: v for k, v in r.items() if k != "file_sha256"} for r in got] == [
            {k: v for k, v in r.items() if k != "file_sha256"} for r in expected
        ]


def test_a_non_utf8_byte_is_read_as_cp1252_not_a_failure() -> None:
    (record,) = parse_bytes(b'7,"CAF\xc9 EXAMPLE",-0- ,"CUBA"' + b",-0- " * 8 + b"\r\n")
    assert record["sdn_name"] == "CAFÉ EXAMPLE"


def test_utf8_is_kept() -> None:
    (record,) = parse_bytes('7,"CAFÉ EXAMPLE",-0- ,"CUBA"'.encode() + b",-0- " * 8 + b"\r\n")
    assert record["sdn_name"] == "CAFÉ EXAMPLE"


def test_empty_optional_files_are_zero_records_but_an_empty_sdn_list_is_an_error() -> None:
    assert parse_bytes(b"", "comments") == []
    assert parse_bytes(b"\x1a", "alt") == []
    with pytest.raises(PermanentError, match=r"SDN\.CSV holds no records"):
        parse_bytes(b"\x1a", "sdn")


@pytest.mark.parametrize(
    ("data", "stream", "message"),
    [
        (b'1,"A","individual"\r\n', "sdn", r"SDN\.CSV line 1: 3 fields, expected 12 \(ent_num, sdn_name"),
        (b'x1,2,"A",-0- ,"B",-0- \r\n', "add", r"ADD\.CSV line 1: ent_num 'x1' is not an integer"),
        (b'-0- ,1,"aka","A",-0- \r\n', "alt", r"ALT\.CSV line 1: ent_num is missing"),
        (b'ent_num,remarks_extended\r\n1,"x"\r\n', "comments", r"SDN_COMMENTS\.CSV line 1: ent_num 'ent_num' is not"),
        (b'1,"unclosed quote\r\n', "comments", r"SDN_COMMENTS\.CSV line \d+: malformed CSV"),
    ],
)
def test_format_violations_are_permanent_and_name_file_line_problem(data: bytes, stream: str, message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        parse_bytes(data, stream)


def test_second_row_error_names_its_line() -> None:
    data = sample("alt").read_bytes().replace(b'803,"fka",', b'803,"fka","extra",')
    with pytest.raises(PermanentError, match=r"ALT\.CSV line 3: 6 fields, expected 5"):
        parse_bytes(data, "alt")


def test_parse_without_plan_params_still_hashes_and_leaves_seen_at_null() -> None:
    part = Part(key="k", stream="alt")
    with sample("alt").open("rb") as f:
        records = list(SOURCE.parse(f, part))
    assert records[0]["file_sha256"] == sha(sample("alt")) and records[0]["file_seen_at"] is None


def test_unknown_stream_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError, match="unknown OFAC stream 'default'"):
        list(SOURCE.parse(io.BytesIO(b""), Part(key="k")))


# ---- 2. conformance on the real files (../shared/fixtures/ofac) -----------------------------------------
REAL = [
    ("sdn", "sdn.csv", 8976),
    ("add", "add.csv", 13837),
    ("alt", "alt.csv", 11910),
    ("comments", "sdn_comments.csv", 5),
]


def oracle(path: Path, stream: str) -> list[list]:
    """The file's rows read independently with the csv module: -0- -> None, ids -> int."""
    text = path.read_bytes().decode("ascii")
    rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r != ["\x1a"]]
    ints = {i for i, c in enumerate(STREAMS[stream].fields) if c.type == "INT64"}
    return [[None if v == "-0- " else int(v) if i in ints else v for i, v in enumerate(r)] for r in rows]


@pytest.mark.parametrize(("stream", "name", "count"), REAL)
def test_real_file_every_row_and_value_as_published(stream: str, name: str, count: int) -> None:
    path = real(name)
    data = path.read_bytes()
    records = parse_file(path, stream)
    assert len(records) == count == data.count(b"\r\n"), "one record per CRLF line, the 0x1A byte is not a row"
    fields = [c.name for c in STREAMS[stream].fields]
    assert [[r[f] for f in fields] for r in records] == oracle(path, stream)
    assert {r["file_sha256"] for r in records} == {hashlib.sha256(data).hexdigest()}


def test_real_sdn_first_last_and_null_marker_quirks() -> None:
    path = real("sdn.csv")
    records = parse_file(path, "sdn")
    first, last = records[0], records[-1]
    assert (first["ent_num"], first["sdn_name"], first["sdn_type"], first["program"]) == (
        36,
        "AEROCARIBBEAN AIRLINES",
        None,
        "CUBA",
    )
    assert (last["ent_num"], last["sdn_name"], last["sdn_type"], last["program"]) == (
        32391,
        "DJIBO, Ousmane Illiassou",
        "individual",
        "SDGT",
    )
    assert last["remarks"].startswith("DOB 1984; POB Niger;")
    # The marker is unquoted "-0- " (trailing space): 65,180 of them, each one a NULL.
    values = [v for r in records for k, v in r.items() if k not in ("file_seen_at",)]
    assert path.read_bytes().count(b"-0- ") == 65180 == sum(v is None for v in values)
    # ...while "-0-" inside a value is data (a US FEIN in the remarks).
    assert sum("CH-660-0-469-982-0" in (r["remarks"] or "") for r in records) == 1
    assert Counter(r["sdn_type"] for r in records) == {"individual": 4620, None: 3673, "vessel": 406, "aircraft": 277}
    assert "99,144" in {r["tonnage"] for r in records}, "tonnage keeps OFAC's thousands separator (text field)"
    assert "IRAN] [SDGT] [IRGC] [IFSR" in {r["program"] for r in records}, "several programs joined by '] ['"
    assert max(len(r["remarks"] or "") for r in records) == 1000


def test_real_add_alt_last_rows_and_links() -> None:
    sdn_ids = {r["ent_num"] for r in parse_file(real("sdn.csv"), "sdn")}
    add, alt = parse_file(real("add.csv"), "add"), parse_file(real("alt.csv"), "alt")
    assert [add[-1][k] for k in ("ent_num", "add_num", "address", "city_state_postal_code", "country")] == [
        32391,
        48784,
        None,
        "Tillaberi Region",
        "Niger",
    ]
    assert all(r["add_remarks"] is None for r in add)
    assert [alt[-1][k] for k in ("ent_num", "alt_num", "alt_type", "alt_name", "alt_remarks")] == [
        32391,
        50851,
        "aka",
        "DJIBO, Halid Illiassou",
        None,
    ]
    assert Counter(r["alt_type"] for r in alt) == {"aka": 11523, "fka": 369, "nka": 18}
    assert {r["ent_num"] for r in add} <= sdn_ids and {r["ent_num"] for r in alt} <= sdn_ids


def test_real_comments_continue_remarks_cut_at_1000_characters() -> None:
    sdn = {r["ent_num"]: r for r in parse_file(real("sdn.csv"), "sdn")}
    comments = parse_file(real("sdn_comments.csv"), "comments")
    assert [c["ent_num"] for c in comments] == [12300, 28263, 28264, 29703, 30518]
    assert all(len(sdn[c["ent_num"]]["remarks"]) == 1000 for c in comments)
    # The cut falls mid-word: "...a.k.a. 'snowsjo" + "hn'; Linked To: LAZARUS GROUP."
    joined = sdn[28263]["remarks"] + comments[1]["remarks_extended"]
    assert "a.k.a. 'snowsjohn'; Linked To: LAZARUS GROUP." in joined


@pytest.mark.parametrize(
    ("name", "stream", "message"),
    [
        ("UN_consolidated.xml", "sdn", r"SDN\.CSV line 1: 1 fields, expected 12 .* starts with '<\?xml"),
        ("add.csv", "sdn", r"SDN\.CSV line 1: 6 fields, expected 12"),
        ("sdn.csv", "alt", r"ALT\.CSV line 1: 12 fields, expected 5"),
    ],
)
def test_real_files_of_the_wrong_kind_are_rejected_with_a_clear_message(name: str, stream: str, message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        parse_file(real(name), stream)


def test_real_json_api_body_is_not_mistaken_for_a_csv() -> None:
    path = FIXTURES / "eia" / "v2_crude-oil-imports_data_CTY_AE_2009-01.json"
    if not path.exists():
        pytest.skip(f"../shared/fixtures not present: {path}")
    with pytest.raises(PermanentError, match=r"SDN\.CSV line 1: malformed CSV"):
        parse_file(path, "sdn")


def test_real_files_through_plan_fetch_and_write(tmp_path: Path, site: Site) -> None:
    for stream, name, _ in REAL:
        shutil.copyfile(real(name), site.dir / STREAMS[stream].file)
    with Http() as http:
        ctx = make_ctx(http, site.url, tmp_path / "work")
        parts = SOURCE.plan(OfacParams(), ctx)
        store = LocalStore(tmp_path / "out")
        results = {p.stream: run_part(SOURCE, p, ctx, store) for p in parts}
    for stream, name, count in REAL:
        assert results[stream].records == count
        assert parquet_rows(tmp_path / "out", stream) == count
        assert results[stream].cursors == {stream: cursor_value(SEEN, sha(real(name)))}


# ---- 3. params ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"streams": ["sdn", "sdn_advanced"]}, "params.streams.1"),
        ({"streams": []}, "params.streams"),
        ({"streams": "sdn"}, "params.streams"),
        ({"force": "sometimes"}, "params.force"),
        ({"since": "2024-01-01"}, "params.since"),
    ],
)
def test_bad_params_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(BadParams) as exc:
        SOURCE.validate_params(params)
    assert exc.value.field == field and field in exc.value.message


def test_params_defaults_and_duplicates() -> None:
    assert SOURCE.validate_params({}) == OfacParams(streams=ALL_STREAMS, force=False)
    assert SOURCE.validate_params({"streams": ["alt", "sdn", "alt"]}).streams == ("alt", "sdn")
    assert SOURCE.validate_params(SOURCE.demo_params).streams == ALL_STREAMS


def test_the_current_files_are_one_job_per_hour() -> None:
    p = OfacParams()
    same = SOURCE.dedup_params(p, NOW.replace(minute=59))
    assert SOURCE.dedup_params(p, NOW) == same and same["latest_as_of"] == "2024-01-15T12"
    assert SOURCE.dedup_params(p, NOW + timedelta(hours=1)) != same
    assert SOURCE.dedup_params(OfacParams(force=True), NOW) != same


# ---- 4. plan: one part per changed file; unchanged files are skipped ---------------------------------
def test_first_run_plans_one_part_per_file_keyed_by_content(tmp_path: Path, site: Site) -> None:
    with Http() as http:
        parts = SOURCE.plan(OfacParams(), make_ctx(http, site.url, tmp_path / "w"))
        hits = site.hits()
    assert [p.stream for p in parts] == list(ALL_STREAMS)
    assert [(p.index, p.total) for p in parts] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    for p in parts:
        digest = sha(sample(p.stream))
        assert p.key == f"{p.stream}-{digest[:16]}" and p.cursor == p.stream and p.partition == ""
        assert p.params == {"file": STREAMS[p.stream].file, "sha256": digest, "seen_at": SEEN}
    assert hits == {f"/{STREAMS[s].file}": 1 for s in ALL_STREAMS}


def test_unchanged_files_plan_nothing_changed_ones_plan_alone_and_force_replans(tmp_path: Path, site: Site) -> None:
    cursors = {s: cursor_value("2024-01-01T00:00:00Z", sha(sample(s))) for s in ALL_STREAMS}
    with Http() as http:
        url = site.url
        assert SOURCE.plan(OfacParams(), make_ctx(http, url, tmp_path / "a", cursors)) == []
        stale = {**cursors, "alt": cursor_value("2024-01-01T00:00:00Z", "0" * 64)}
        (alt,) = SOURCE.plan(OfacParams(), make_ctx(http, url, tmp_path / "b", stale))
        forced = SOURCE.plan(OfacParams(force=True), make_ctx(http, url, tmp_path / "c", cursors))
        only = SOURCE.plan(OfacParams(streams=("comments",)), make_ctx(http, url, tmp_path / "d"))
    assert (alt.stream, alt.index, alt.total) == ("alt", 0, 1)
    assert [p.key for p in forced] == [f"{s}-{sha(sample(s))[:16]}" for s in ALL_STREAMS], "same names: overwrite"
    assert [p.stream for p in only] == ["comments"]


def test_cursor_values_only_grow_and_carry_the_hash() -> None:
    part = Part(key="sdn-x", stream="sdn", cursor="sdn", params={"sha256": "ab" * 32, "seen_at": SEEN})
    mark = SOURCE.watermark(part, 6)
    assert mark == f"{SEEN}/{'ab' * 32}" and cursor_sha256(mark) == "ab" * 32
    earlier = cursor_value("2024-01-15T12:34:55Z", "ff" * 32)
    assert mark > earlier, "the status store keeps the maximum: a later check must compare greater"
    assert cursor_sha256(None) is None


def test_an_html_page_answered_with_200_is_transient(tmp_path: Path, site: Site) -> None:
    (site.dir / "SDN.CSV").write_bytes(b"\n  <!DOCTYPE html><html><body>Service Unavailable</body></html>")
    with Http() as http, pytest.raises(TransientError) as exc:
        SOURCE.plan(OfacParams(), make_ctx(http, site.url, tmp_path / "w"))
    assert "OFAC SDN.CSV: the server answered a web page instead of the CSV" in exc.value.message


# ---- 5. fetch + parse + write through run_part against the replay server ------------------------------
def test_run_writes_raw_and_parquet_and_a_rerun_writes_nothing(tmp_path: Path, site: Site) -> None:
    out = tmp_path / "out"
    store = LocalStore(out)
    with Http() as http:
        url = site.url
        ctx = make_ctx(http, url, tmp_path / "run1")
        results = [run_part(SOURCE, p, ctx, store) for p in SOURCE.plan(OfacParams(), ctx)]
        first_hits = site.hits()
        cursors = {k: v for r in results for k, v in r.cursors.items()}
        written = tree(out)
        # A second run with the state the first one left: every hash matches, nothing is planned or written.
        later = make_ctx(http, url, tmp_path / "run2", cursors, now=NOW + timedelta(hours=1))
        assert SOURCE.plan(OfacParams(), later) == []
    assert tree(out) == written
    assert first_hits == {f"/{STREAMS[s].file}": 1 for s in ALL_STREAMS}, "fetch reused the planned download"
    for stream, result in zip(ALL_STREAMS, results, strict=True):
        digest = sha(sample(stream))
        stem, ext = STREAMS[stream].file.rsplit(".", 1)
        assert result.records == SAMPLE_COUNTS[stream] and result.skipped == 0
        assert result.outputs == [
            (out / f"raw/ofac/{stream}/{stem}-{digest[:16]}.{ext}").as_uri(),
            (out / f"normalized/ofac/{stream}/{stream}-{digest[:16]}.parquet").as_uri(),
            (out / f"normalized/ofac/{stream}/schema.json").as_uri(),
        ]
        assert (out / f"raw/ofac/{stream}/{stem}-{digest[:16]}.{ext}").read_bytes() == sample(stream).read_bytes()
        assert cursors[stream] == cursor_value(SEEN, digest)
        schema = json.loads((out / f"normalized/ofac/{stream}/schema.json").read_text())
        assert [c["name"] for c in schema] == [c.name for c in SOURCE.schemas[stream]]
    table = pq.read_table(out / f"normalized/ofac/sdn/sdn-{sha(sample('sdn'))[:16]}.parquet")
    assert table.num_rows == 6 and str(table.schema.field("file_seen_at").type) == "timestamp[us, tz=UTC]"
    assert table.column("sdn_type").to_pylist() == [None, "individual", "vessel", "aircraft", None, "individual"]


def test_forced_rerun_overwrites_the_same_objects_no_duplicates(tmp_path: Path, site: Site) -> None:
    out = tmp_path / "out"
    with Http() as http:
        for run in range(2):
            ctx = make_ctx(http, site.url, tmp_path / f"run{run}", now=NOW + timedelta(hours=run))
            for p in SOURCE.plan(OfacParams(force=True), ctx):
                run_part(SOURCE, p, ctx, LocalStore(out))
    for stream in ALL_STREAMS:
        assert parquet_rows(out, stream) == SAMPLE_COUNTS[stream]
        assert len(list((out / "raw" / "ofac" / stream).iterdir())) == 1


def test_a_new_publication_is_stored_beside_the_old_one(tmp_path: Path, site: Site) -> None:
    out = tmp_path / "out"
    with Http() as http:
        url = site.url
        ctx = make_ctx(http, url, tmp_path / "run1")
        cursors: dict[str, str] = {}
        for p in SOURCE.plan(OfacParams(), ctx):
            cursors.update(run_part(SOURCE, p, ctx, LocalStore(out)).cursors)
        sdn = site.dir / "SDN.CSV"
        sdn.write_bytes(sdn.read_bytes()[:-1] + b'1007,"NEW LISTING EXAMPLE",-0- ,"SDGT"' + b",-0- " * 8 + b"\r\n\x1a")
        later = make_ctx(http, url, tmp_path / "run2", cursors, now=NOW + timedelta(days=1))
        (part,) = SOURCE.plan(OfacParams(), later)
        result = run_part(SOURCE, part, later, LocalStore(out))
    assert part.stream == "sdn" and result.records == 7
    assert result.cursors["sdn"] > cursors["sdn"] and cursor_sha256(result.cursors["sdn"]) == sha(sdn)
    assert parquet_rows(out, "sdn") == 6 + 7, "each version is its own object; nothing is appended to the old one"


def test_fan_out_part_downloads_again_and_refuses_a_file_changed_since_planning(tmp_path: Path, site: Site) -> None:
    with Http() as http:
        url = site.url
        parts = SOURCE.plan(OfacParams(), make_ctx(http, url, tmp_path / "plan"))
        raw = SOURCE.fetch(parts[1], make_ctx(http, url, tmp_path / "task-add"))
        assert raw.path.read_bytes() == sample("add").read_bytes() and site.hits()["/ADD.CSV"] == 2
        (site.dir / "SDN.CSV").write_bytes(sample("sdn").read_bytes().replace(b"CUBA", b"CUBB"))
        with pytest.raises(PermanentError) as exc:
            SOURCE.fetch(parts[0], make_ctx(http, url, tmp_path / "task-sdn"))
    assert "OFAC SDN.CSV changed upstream after this job was planned" in exc.value.message
    assert "the next run ingests the new version" in exc.value.message


def test_the_demo_requests_have_recorded_answers(tmp_path: Path) -> None:
    root = materialize(tmp_path / "replay")
    routes = json.loads((root / "ofac" / "_routes.json").read_text())
    wanted = {f"/{STREAMS[s].file}" for s in SOURCE.validate_params(SOURCE.demo_params).streams}
    assert {r["path"] for r in routes} == wanted
    assert all((root / "ofac" / r["file"]).read_bytes() == (SAMPLE_DIR / r["file"]).read_bytes() for r in routes)


# ---- 6. secrets and refusals -------------------------------------------------------------------------------
def test_no_secret_is_needed_so_nothing_can_be_missing_or_leak() -> None:
    assert Ofac.secrets == ()
    assert load_secrets(SOURCE) == {}
    assert DEFAULT_BASE_URL.startswith("https://sanctionslistservice.ofac.treas.gov/")


def forbid(site: Site, status: int) -> None:
    """SDN.CSV redirects to a presigned-style URL (as OFAC's service does) that answers ``status``."""
    (site.dir / "denied.xml").write_text("<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>")
    routes = [
        {
            "path": "/SDN.CSV",
            "status": 302,
            "headers": {"Location": f"/{site.name}/s3/SDN.CSV?X-Amz-Signature=SECRETSIG"},
        },
        {"path": "/s3/SDN.CSV", "status": status, "file": "denied.xml", "headers": {"Content-Type": "application/xml"}},
    ]
    (site.dir / "_routes.json").write_text(json.dumps(routes))


@pytest.mark.parametrize("status", [401, 403])
def test_a_refusal_is_permanent_names_the_file_and_leaks_no_signed_query(
    tmp_path: Path, site: Site, status: int
) -> None:
    forbid(site, status)
    with Http(max_tries=1) as http, pytest.raises(PermanentError) as exc:
        SOURCE.plan(OfacParams(), make_ctx(http, site.url, tmp_path / "w"))
    message = exc.value.message
    assert message.startswith("OFAC SDN.CSV download failed: upstream answered")
    assert f"{status} from" in message and "AccessDenied" in message
    assert "need no key" in message and "SECRETSIG" not in message and "X-Amz-Signature" not in message


def test_server_errors_are_transient_and_a_missing_file_is_permanent(tmp_path: Path, site: Site) -> None:
    routes = [{"path": "/SDN.CSV", "status": 503}, {"path": "/ADD.CSV", "status": 404}]
    (site.dir / "_routes.json").write_text(json.dumps(routes))
    (site.dir / "ADD.CSV").unlink()
    with Http(max_tries=1) as http:
        url = site.url
        with pytest.raises(TransientError, match="503"):
            SOURCE.plan(OfacParams(streams=("sdn",)), make_ctx(http, url, tmp_path / "a"))
        with pytest.raises(PermanentError, match=r"OFAC ADD\.CSV download failed: upstream answered 404"):
            SOURCE.plan(OfacParams(streams=("add",)), make_ctx(http, url, tmp_path / "b"))


# ---- live (opt-in: -m live) ----------------------------------------------------------------------------
@pytest.mark.live
def test_live_comments_file(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The real service, smallest file. OFAC needs no key, so opt-in is explicit: ``-m live``."""
    selected = request.config.getoption("markexpr") or ""
    if "live" not in selected or "not live" in selected:
        pytest.skip("talks to the real OFAC service: run with -m live")
    with Http(rate=Ofac.http_rate, name="ofac") as http:
        ctx = make_ctx(http, DEFAULT_BASE_URL, tmp_path / "w", now=datetime.now(UTC))
        (part,) = SOURCE.plan(OfacParams(streams=("comments",)), ctx)
        raw = SOURCE.fetch(part, ctx)
        with raw.open() as f:
            records = list(SOURCE.parse(f, part))
    assert records and all(isinstance(r["ent_num"], int) for r in records)
