"""FRED: parse on the project's samples and on real captured answers, params, plan, fetch, errors, the key."""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pyarrow.parquet as pq
import pytest

import common.sources.fred.client as fred_mod
from common.core.errors import (
    BadParams,
    ConfigError,
    IngestError,
    PermanentError,
    TransientError,
    UpstreamPermanent,
)
from common.gcp.objects import LocalStore
from common.local.recorded import ReplayServer
from common.local.samples import HERE as SAMPLES
from common.runtime.ingest import load_secrets, run_part
from common.sources.base import Context, Part, SourceState, iter_records
from common.sources.fred import (
    DEFAULT_SERIES,
    EARLIEST,
    LATEST,
    Fred,
    FredParams,
    fred_error,
    http_error,
    vintage_windows,
)
from common.sources.http import Http

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
SOURCE = Fred()
KEY = "abcdef0123456789abcdef0123456789"  # a made-up key of FRED's shape (32 lower-case alphanumerics)
#: 12:00 UTC on 1 July 2024 is 07:00 in St. Louis: FRED's "yesterday" is 2024-06-30, where the samples end.
NOW = datetime(2024, 7, 1, 12, tzinfo=UTC)
SAMPLE_END = "2024-06-30"
#: Read before conftest's autouse fixture clears TRIBUTARY_* variables: only the opt-in live test uses it.
LIVE_KEY = os.environ.get("TRIBUTARY_SECRET_FRED_API_KEY") or os.environ.get("FRED_API_KEY")


def fixture(*parts: str) -> Path:
    path = FIXTURES.joinpath("fred", *parts)
    if not path.exists():
        pytest.skip(f"../shared/fixtures not present ({path}): FRED conformance needs the real answers beside the repo")
    return path


def part_for(sid: str, **params: Any) -> Part:
    base = {"series_id": sid, "realtime_start": None, "realtime_end": None, "after": None}
    return Part(key=f"{sid}.test", stream="observations", partition=sid, params={**base, **params})


def parse_bytes(data: bytes, sid: str = "GDP", **params: Any) -> list[dict[str, Any]]:
    return list(iter_records(SOURCE.parse(io.BytesIO(data), part_for(sid, **params))))


def ctx_for(
    http: Http, base_url: str, workdir: Path, *, state: SourceState | None = None, now: datetime = NOW, key: str = KEY
) -> Context:
    workdir.mkdir(parents=True, exist_ok=True)
    return Context(
        http=http,
        base_url=base_url,
        workdir=workdir,
        state=state or SourceState(),
        now=now,
        secrets={"FRED_API_KEY": key} if key else {},
    )


def replay_dir(root: Path, extra_routes: list[dict[str, Any]] | None = None) -> Path:
    """A replay dir holding only this source's samples (plus routes a test adds in front)."""
    shutil.copytree(SAMPLES / "fred", root / "fred")
    if extra_routes:
        routes = json.loads((root / "fred" / "_routes.json").read_text())
        (root / "fred" / "_routes.json").write_text(json.dumps(extra_routes + routes))
    return root


def fred_page(rows: list[dict[str, str]], *, rs: str = EARLIEST, re: str = SAMPLE_END, **top: Any) -> bytes:
    doc = {"realtime_start": rs, "realtime_end": re, "count": len(rows), "offset": 0, "limit": 100000, **top}
    return json.dumps({**doc, "observations": rows}).encode()


def obs(d: str, rs: str, re: str, v: str) -> dict[str, str]:
    return {"realtime_start": rs, "realtime_end": re, "date": d, "value": v}


# ---- 1. the project's own samples -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sid", "count", "missing"), [("GDP", 13, 1), ("DFF", 9, 0), ("DGS10", 5, 1), ("UNRATE", 3, 0)]
)
def test_samples_parse_to_typed_records(sid: str, count: int, missing: int) -> None:
    records = parse_bytes((SAMPLES / "fred" / f"observations_{sid}.json").read_bytes(), sid)
    assert len(records) == count
    assert sum(r["value"] is None for r in records) == missing
    for r in records:
        assert r["series_id"] == sid
        assert all(isinstance(r[c], date) for c in ("date", "realtime_start", "realtime_end"))
        assert r["value"] is None or isinstance(r["value"], float)
        assert r["realtime_start"] <= r["realtime_end"]


def test_sample_gdp_keeps_every_vintage_and_missing_is_null_not_zero() -> None:
    records = parse_bytes((SAMPLES / "fred" / "observations_GDP.json").read_bytes())
    assert records[0] == {
        "series_id": "GDP",
        "date": date(1946, 1, 1),
        "realtime_start": date(2023, 7, 27),
        "realtime_end": date(2024, 6, 30),
        "value": None,
    }
    q2 = [(r["realtime_start"].isoformat(), r["value"]) for r in records if r["date"] == date(2023, 4, 1)]
    assert q2 == [("2023-07-27", 26835.5), ("2023-08-30", 26841.9), ("2023-09-28", 26813.6)]


def test_sample_vintage_dates_answer_yields_no_records() -> None:
    assert parse_bytes((SAMPLES / "fred" / "vintagedates_GDP.json").read_bytes(), realtime_start=EARLIEST) == []


def test_samples_routes_point_at_existing_files() -> None:
    routes = json.loads((SAMPLES / "fred" / "_routes.json").read_text())
    for route in routes:
        assert (SAMPLES / "fred" / route["file"]).is_file()
    served = {r["query"]["series_id"] for r in routes if r["status"] == 200}
    assert set(DEFAULT_SERIES) <= served and set(Fred.demo_params["series"]) <= served


# ---- 2. conformance on real captured FRED answers ----------------------------------------------------
REAL_OBSERVATIONS = [
    # file, series, observations (= FRED's count), "." values
    ("pyfredapi/series_observations_GDP.json", "GDP", 317, 4),
    ("pyfredapi/series_observations_GDP_asof_2019-01-01.json", "GDP", 2902, 245),
    ("pyfredapi/series_observations_GDP_output_type4_initial_release.json", "GDP", 134, 0),
    ("openbb/series_observations_DFF_2023H1.json", "DFF", 157, 0),
    ("openbb/series_observations_DGS1MO_eop.json", "DGS1MO", 6480, 270),
]


@pytest.mark.parametrize(("name", "sid", "count", "missing"), REAL_OBSERVATIONS)
def test_real_observations_parse_value_for_value(name: str, sid: str, count: int, missing: int) -> None:
    raw = fixture(name).read_bytes()
    payload = json.loads(raw)
    records = parse_bytes(raw, sid)
    assert len(records) == count == payload["count"] == len(payload["observations"])
    assert sum(r["value"] is None for r in records) == missing
    for r, o in zip(records, payload["observations"], strict=True):
        assert r["date"].isoformat() == o["date"]
        assert r["realtime_start"].isoformat() == o["realtime_start"]
        assert r["realtime_end"].isoformat() == o["realtime_end"]
        assert r["value"] == (None if o["value"] == "." else float(o["value"]))


def test_real_vintages_answer_keeps_every_vintage() -> None:
    """GDP as known from 1776-07-04 to 2019-01-01: several vintages per quarter, '.' in some of them."""
    records = parse_bytes(fixture("pyfredapi/series_observations_GDP_asof_2019-01-01.json").read_bytes())
    q1946 = [(r["realtime_start"].isoformat(), r["realtime_end"].isoformat(), r["value"]) for r in records][:4]
    assert q1946 == [
        ("1992-12-22", "1996-01-18", 199.7),
        ("1996-01-19", "1997-05-06", None),
        ("1997-05-07", "1999-10-27", 210.4),
        ("1999-10-28", "2019-01-01", None),
    ]
    per_date = Counter(r["date"] for r in records)
    assert len(per_date) == 291 and max(per_date.values()) > 10
    # FRED clips vintages to the window asked for: the open ones end on the window's last day
    assert {r["realtime_end"] for r in records if r["date"] == date(2018, 7, 1)} >= {date(2019, 1, 1)}
    assert max(r["realtime_end"] for r in records) == date(2019, 1, 1)


def test_real_vintage_dates_match_the_vintages_of_the_observations() -> None:
    """The ground the chunking stands on: every realtime_start is a date of /series/vintagedates."""
    vintages = json.loads(fixture("pyfredapi/series_vintagedates_GDP.json").read_bytes())
    assert len(vintages["vintage_dates"]) == vintages["count"] == 401
    asof = json.loads(fixture("pyfredapi/series_observations_GDP_asof_2019-01-01.json").read_bytes())
    starts = {o["realtime_start"] for o in asof["observations"]}
    assert starts <= set(vintages["vintage_dates"])
    assert len(starts) == len([v for v in vintages["vintage_dates"] if v <= "2019-01-01"]) == 324
    assert parse_bytes(json.dumps(vintages).encode(), realtime_start=EARLIEST) == []


@pytest.mark.parametrize(
    "name",
    ["openbb/error_400_series_does_not_exist_observations.json", "openbb/error_400_series_does_not_exist_series.json"],
)
def test_real_error_bodies_raise_a_permanent_error_with_freds_message(name: str) -> None:
    raw = fixture(name).read_bytes()
    with pytest.raises(PermanentError) as err:
        parse_bytes(raw, "USAB6DBTT01CXCUSAQ")
    assert err.value.message == (
        "FRED series USAB6DBTT01CXCUSAQ does not exist (400: Bad Request. The series does not exist.)"
    )


def _other_endpoint_files() -> list[str]:
    root = FIXTURES / "fred"
    skip = ("series_observations_", "error_400_", "series_vintagedates_")
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.json") if not p.name.startswith(skip)) or [
        "(fixtures absent)"
    ]


@pytest.mark.parametrize("name", _other_endpoint_files())
def test_real_answers_of_other_endpoints_are_refused_with_a_readable_error(name: str) -> None:
    raw = fixture(name).read_bytes()
    with pytest.raises(PermanentError, match="not a FRED observations answer"):
        parse_bytes(raw)


def cassette(path: Path) -> list[tuple[str, bytes]]:
    """(uri, body) of each interaction of a VCR cassette whose bodies are ``!!binary`` (gzip) blocks."""
    lines = path.read_text().splitlines()
    out, uri, i = [], "", 0
    while i < len(lines):
        text = lines[i].strip()
        if text.startswith("uri: "):
            uri = text[5:]
        elif text == "string: !!binary |":
            indent = len(lines[i]) - len(lines[i].lstrip())
            block = []
            while i + 1 < len(lines) and len(lines[i + 1]) - len(lines[i + 1].lstrip()) > indent:
                i += 1
                block.append(lines[i].strip())
            body = base64.b64decode("".join(block))
            out.append((uri, gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body))
        i += 1
    return out


def test_recorded_openbb_request_is_exactly_what_fetch_sends(tmp_path: Path) -> None:
    """Replay the openbb cassette: same query (key scrubbed to MOCK_API_KEY by the recorder), same records."""
    (uri, body), _ = cassette(fixture("cassettes/openbb_test_fred_federal_funds_rate_fetcher_urllib3_v2.yaml"))
    recorded = dict(parse_qsl(urlsplit(uri).query))
    assert urlsplit(uri).path == "/fred/series/observations"

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/fred/series/observations"
        assert dict(request.url.params) == recorded
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json; charset=UTF-8"})

    params = SOURCE.validate_params(
        {"series": "DFF", "observation_start": "2023-01-01", "observation_end": "2023-06-06"}
    )
    with Http(transport=httpx.MockTransport(handler), max_tries=1) as http:
        ctx = ctx_for(http, "https://api.stlouisfed.org", tmp_path, key="MOCK_API_KEY")
        (part,) = SOURCE.plan(params, ctx)
        assert part.key == "DFF.current.obs_2023-01-01_2023-06-06" and part.cursor is None
        raw = SOURCE.fetch(part, ctx)
        with raw.open() as f:
            records = list(SOURCE.parse(f, part))
    expected = parse_bytes(fixture("openbb/series_observations_DFF_2023H1.json").read_bytes(), "DFF")
    assert records == expected and len(records) == 157


# ---- parse: the format's edges -------------------------------------------------------------------------
def test_empty_result_is_zero_records() -> None:
    assert parse_bytes(fred_page([])) == []


def test_pretty_printed_single_answer_is_accepted() -> None:
    doc = json.loads(fred_page([obs("2024-01-01", "2024-04-25", SAMPLE_END, "1.5")]))
    assert len(parse_bytes(json.dumps(doc, indent=2).encode())) == 1


@pytest.mark.parametrize(
    ("row", "match"),
    [
        (obs("2024-01-01", "2024-04-25", SAMPLE_END, "n/a"), "neither a number nor FRED's '.'"),
        (obs("2024-01-01", "2024-04-25", SAMPLE_END, ""), "neither a number"),
        (obs("01/01/2024", "2024-04-25", SAMPLE_END, "1"), "date '01/01/2024' is not a YYYY-MM-DD date"),
        ({"date": "2024-01-01", "value": "1"}, "realtime_start None is not a YYYY-MM-DD date"),
    ],
)
def test_bad_rows_are_permanent_errors_naming_the_problem(row: dict[str, str], match: str) -> None:
    with pytest.raises(PermanentError, match=match):
        parse_bytes(fred_page([row]))


def test_truncated_answer_is_a_permanent_error() -> None:
    doc = json.loads(fred_page([obs("2024-01-01", "2024-04-25", SAMPLE_END, "1")]))
    doc["count"] = 2
    with pytest.raises(PermanentError, match="1 observations where FRED's count says 2"):
        parse_bytes(json.dumps(doc).encode())


@pytest.mark.parametrize("data", [b"<html>Service Unavailable</html>", b"[1, 2]"])
def test_non_fred_payload_is_a_permanent_error(data: bytes) -> None:
    with pytest.raises(PermanentError):
        parse_bytes(data)


def test_rate_limit_error_body_is_transient() -> None:
    body = b'{"error_code":429,"error_message":"Too Many Requests.  Exceeded Rate Limit"}'
    with pytest.raises(TransientError, match="rate limit"):
        parse_bytes(body)


def test_later_windows_drop_the_vintages_already_valid_at_their_start() -> None:
    """Window 2 of a part starts at a vintage window 1 ended on: rows clipped to it were stored already."""
    first = fred_page(
        [obs("2024-01-01", "2024-04-25", "2024-05-29", "1"), obs("2024-01-01", "2024-05-30", "2024-05-30", "2")],
        re="2024-05-30",
    )
    later = fred_page(
        [obs("2024-01-01", "2024-05-30", SAMPLE_END, "2"), obs("2024-01-01", "2024-06-27", SAMPLE_END, "3")],
        rs="2024-05-30",
    )
    records = parse_bytes(first + b"\n" + later, realtime_start=EARLIEST, realtime_end=SAMPLE_END)
    assert [(r["realtime_start"].isoformat(), r["value"]) for r in records] == [
        ("2024-04-25", 1.0),
        ("2024-05-30", 2.0),
        ("2024-06-27", 3.0),
    ]
    # an incremental part drops what was valid at its cursor even in its first window
    records = parse_bytes(later, realtime_start="2024-05-30", realtime_end=SAMPLE_END, after="2024-05-30")
    assert [r["value"] for r in records] == [3.0]


# ---- 3. params ---------------------------------------------------------------------------------------------
def test_default_params_are_the_default_series_incremental() -> None:
    p = SOURCE.validate_params({})
    assert isinstance(p, FredParams) and p.series == DEFAULT_SERIES and p.incremental


def test_series_are_normalised_and_a_comma_string_works() -> None:
    assert SOURCE.validate_params({"series": "dff, gdp,DFF"}).series == ("DFF", "GDP")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("raw", "field", "match"),
    [
        ({"series": ["GD P"]}, "params.series", "not a FRED series id"),
        ({"series": []}, "params.series", "at least 1"),
        ({"series": "GDP", "observation_start": "2024-13-01"}, "params.observation_start", "date"),
        ({"observation_start": "2024-02-01", "observation_end": "2024-01-01"}, "params.observation_end", "before"),
        ({"realtime_start": "2019-01-01"}, "params.realtime_end", "needs a value"),
        ({"realtime_end": "2019-01-01"}, "params.realtime_end", "needs realtime_start"),
        ({"realtime_start": "2019-01-02", "realtime_end": "2019-01-01"}, "params.realtime_end", "before"),
        ({"realtime_start": "1700-01-01", "realtime_end": "2019-01-01"}, "params.realtime_start", "1776-07-04"),
        ({"api_key": "x"}, "params.api_key", "not permitted"),
    ],
)
def test_invalid_params_name_the_field(raw: dict[str, Any], field: str, match: str) -> None:
    with pytest.raises(BadParams, match=match) as err:
        SOURCE.validate_params(raw)
    assert err.value.field == field and err.value.message.startswith(field)


# ---- 4. plan, incrementality, dedup ---------------------------------------------------------------------
def plan(raw: dict[str, Any], *, cursors: dict[str, str] | None = None, now: datetime = NOW) -> list[Part]:
    ctx = Context(http=None, base_url="", workdir=Path("."), state=SourceState(cursors=cursors or {}), now=now)  # type: ignore[arg-type]
    return SOURCE.plan(SOURCE.validate_params(raw), ctx)


def test_first_run_plans_one_part_per_series_over_every_vintage_up_to_yesterday() -> None:
    parts = plan({})
    assert [p.key for p in parts] == ["DFF.full", "DGS10.full", "UNRATE.full", "GDP.full"]
    assert (parts[0].index, parts[0].total, parts[0].partition, parts[0].cursor, parts[0].stream) == (
        0,
        4,
        "DFF",
        "DFF",
        "observations",
    )
    assert parts[3].params == {
        "series_id": "GDP",
        "realtime_start": EARLIEST,
        "realtime_end": "2024-06-30",
        "after": None,
        "observation_start": None,
        "observation_end": None,
    }
    assert SOURCE.watermark(parts[3], 13) == "2024-06-30"


def test_next_run_starts_at_each_series_cursor() -> None:
    parts = plan({"series": ["GDP", "DFF"]}, cursors={"GDP": "2024-05-31", "UNRATE": "2024-06-01"})
    gdp, dff = parts
    assert gdp.key == "GDP.after_2024-05-31"
    assert (gdp.params["realtime_start"], gdp.params["realtime_end"], gdp.params["after"]) == (
        "2024-05-31",
        "2024-06-30",
        "2024-05-31",
    )
    assert dff.key == "DFF.full" and dff.params["after"] is None


def test_a_cursor_already_at_yesterday_plans_an_empty_window() -> None:
    (part,) = plan({"series": ["GDP"]}, cursors={"GDP": "2024-06-30"})
    assert (part.params["realtime_start"], part.params["realtime_end"]) == ("2024-06-30", "2024-06-30")
    assert list(vintage_windows("2024-06-30", "2024-06-30", ["2024-06-27"], exclusive=True)) == []


def test_fred_days_follow_st_louis_time() -> None:
    # 03:00 UTC on 1 July is still 30 June in St. Louis: yesterday there is 29 June
    (part,) = plan({"series": ["GDP"]}, now=datetime(2024, 7, 1, 3, tzinfo=UTC))
    assert part.params["realtime_end"] == "2024-06-29"


def test_a_corrupt_cursor_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError, match="cursor of FRED series GDP is not a date"):
        plan({"series": ["GDP"]}, cursors={"GDP": "yesterday"})


def test_windowed_jobs_neither_read_nor_advance_cursors() -> None:
    (vintage,) = plan(
        {"series": ["GDP"], "realtime_start": "2019-01-01", "realtime_end": "2019-01-01"}, cursors={"GDP": "2024-01-01"}
    )
    assert vintage.key == "GDP.rt_2019-01-01_2019-01-01" and vintage.cursor is None
    assert SOURCE.watermark(vintage, 10) is None
    (window,) = plan({"series": ["GDP"], "observation_start": "2020-01-01"})
    assert window.key == "GDP.current.obs_2020-01-01_last" and window.params["realtime_start"] is None


def test_dedup_one_incremental_job_per_fred_day() -> None:
    p = SOURCE.validate_params({})
    day1 = SOURCE.dedup_params(p, NOW)
    assert day1["through"] == "2024-06-30"
    assert SOURCE.dedup_params(p, NOW + timedelta(hours=5)) == day1
    assert SOURCE.dedup_params(p, NOW + timedelta(days=1))["through"] == "2024-07-01"
    past = SOURCE.validate_params({"realtime_start": "2019-01-01", "realtime_end": "2019-01-01"})
    assert "as_of" not in SOURCE.dedup_params(past, NOW)
    assert (
        SOURCE.dedup_params(SOURCE.validate_params({"observation_start": "2020-01-01"}), NOW)["as_of"] == "2024-07-01"
    )


def test_a_backfill_is_one_windowed_job_over_the_vintages_of_the_range() -> None:
    params = SOURCE.validate_params({"series": "GDP,UNRATE", "observation_start": "2000-01-01"})
    ctx = Context(http=None, base_url="", workdir=Path("."), state=SourceState(), now=NOW)  # type: ignore[arg-type]
    (child,) = SOURCE.backfill(datetime(2019, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC), params, ctx)
    assert child == {
        "series": ["GDP", "UNRATE"],
        "observation_start": "2000-01-01",
        "realtime_start": "2019-01-01",
        "realtime_end": "2019-12-31",
    }
    parts = plan(child, cursors={"GDP": "2024-01-01"})
    assert [p.key for p in parts] == [
        "GDP.rt_2019-01-01_2019-12-31.obs_2000-01-01_last",
        "UNRATE.rt_2019-01-01_2019-12-31.obs_2000-01-01_last",
    ]
    assert all(p.cursor is None for p in parts)


def test_vintage_windows_hold_at_most_cap_vintages_and_share_boundaries() -> None:
    v = ["2001-01-01", "2002-01-01", "2003-01-01", "2004-01-01", "2005-01-01"]
    windows = list(
        vintage_windows("2000-06-01", "2009-12-31", [*v, v[0], "1999-01-01", "2010-01-01"], exclusive=False, cap=3)
    )
    assert windows == [("2000-06-01", "2002-01-01"), ("2002-01-01", "2004-01-01"), ("2004-01-01", "2009-12-31")]
    for lo, hi in windows:
        assert len([x for x in v if lo <= x <= hi]) <= 3
    assert list(vintage_windows("2000-06-01", "2009-12-31", [], exclusive=False)) == [("2000-06-01", "2009-12-31")]
    assert list(vintage_windows("2005-01-01", "2009-12-31", v, exclusive=True)) == []


# ---- 5. fetch + parse + write through run_part, against the replay server ------------------------------
def run_job(raw_params: dict[str, Any], http: Http, url: str, tmp: Path, *, state: SourceState, now: datetime = NOW):
    store = LocalStore(tmp / "data")
    ctx = ctx_for(http, url, tmp / f"work-{now:%Y%m%d%H}-{len(list(tmp.glob('work-*')))}", state=state, now=now)
    results = {}
    for part in SOURCE.plan(SOURCE.validate_params(raw_params), ctx):
        results[part.key] = run_part(SOURCE, part, ctx, store)
    return results, store


def rows_on_disk(store: LocalStore) -> list[dict[str, Any]]:
    files = sorted((store.root / "normalized" / "fred").rglob("*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_demo_params_run_offline_and_a_second_run_adds_no_duplicates(tmp_path: Path) -> None:
    root = replay_dir(tmp_path / "replay")
    with ReplayServer(root) as server, Http(rate=Fred.http_rate, name="fred", max_tries=1) as http:
        url = server.url + "/fred"
        first, store = run_job(dict(Fred.demo_params), http, url, tmp_path, state=SourceState())
        assert {k: r.records for k, r in first.items()} == {"DFF.full": 9, "GDP.full": 13}
        gdp = first["GDP.full"]
        assert [o.split("/data/", 1)[1] for o in gdp.outputs] == [
            "raw/fred/observations/partition=GDP/GDP.full.ndjson",
            "normalized/fred/observations/partition=GDP/GDP.full.parquet",
            "normalized/fred/observations/schema.json",
        ]
        assert (gdp.watermark, gdp.cursors) == ("2024-06-30", {"GDP": "2024-06-30"})
        raw_lines = (store.root / "raw/fred/observations/partition=GDP/GDP.full.ndjson").read_bytes().splitlines()
        assert ["vintage_dates" in json.loads(raw_lines[0]), "observations" in json.loads(raw_lines[1])] == [True, True]
        assert len(raw_lines) == 2
        table = pq.read_table(store.root / "normalized/fred/observations/partition=GDP/GDP.full.parquet")
        assert [f"{f.name}:{f.type}" for f in table.schema] == [
            "series_id:string",
            "date:date32[day]",
            "realtime_start:date32[day]",
            "realtime_end:date32[day]",
            "value:double",
        ]
        assert table.column("value").null_count == 1
        before = rows_on_disk(store)

        # the same job delivered again writes the same objects: nothing is added
        again, _ = run_job(dict(Fred.demo_params), http, url, tmp_path, state=SourceState())
        assert {k: r.outputs for k, r in again.items()} == {k: r.outputs for k, r in first.items()}
        assert rows_on_disk(store) == before

        # the next day, from the cursors the first run reached: no new vintage, no observations fetched
        hits = dict(server.hits)
        cursors = {k: v for r in first.values() for k, v in r.cursors.items()}
        later, _ = run_job(
            dict(Fred.demo_params), http, url, tmp_path, state=SourceState(cursors=cursors), now=NOW + timedelta(days=1)
        )
        assert {k: r.records for k, r in later.items()} == {"DFF.after_2024-06-30": 0, "GDP.after_2024-06-30": 0}
        assert server.hits["/fred/fred/series/observations"] == hits["/fred/fred/series/observations"]
        assert server.hits["/fred/fred/series/vintagedates"] == hits["/fred/fred/series/vintagedates"] + 2
        assert len(rows_on_disk(store)) == len(before) == 22
        keys = Counter((r["series_id"], r["date"], r["realtime_start"]) for r in rows_on_disk(store))
        assert max(keys.values()) == 1


def test_unknown_series_fails_permanently_with_freds_message(tmp_path: Path) -> None:
    root = replay_dir(tmp_path / "replay")
    with ReplayServer(root) as server, Http(max_tries=1) as http, pytest.raises(PermanentError) as err:
        run_job({"series": ["NOSUCHSERIES"]}, http, server.url + "/fred", tmp_path, state=SourceState())
    assert err.value.message == "FRED series NOSUCHSERIES does not exist (400: Bad Request. The series does not exist.)"


# ---- fetch against a fake FRED that clips vintages to the window asked for, as FRED does ----------------
class FakeFred:
    """FRED's observations/vintagedates semantics over a set of true vintages (enough to test windows)."""

    def __init__(self, rows: list[dict[str, str]], *, today: str, cap: int = 2000) -> None:
        self.rows, self.today, self.cap = rows, today, cap
        self.vintages = sorted({r["realtime_start"] for r in rows})
        self.queries: list[dict[str, str]] = []
        self.override: Callable[[httpx.Request], httpx.Response | None] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        q = dict(request.url.params)
        self.queries.append({"path": request.url.path, **q})
        if self.override and (answer := self.override(request)):
            return answer
        if q.get("api_key") != KEY:
            return self.error(400, "Bad Request.  The value for variable api_key is not registered.  Read ...")
        rs, re = q.get("realtime_start", self.today), q.get("realtime_end", self.today)
        in_window = [v for v in self.vintages if rs <= v <= re]
        offset, limit = int(q.get("offset", 0)), int(q["limit"])
        top = {"realtime_start": rs, "realtime_end": re, "offset": offset, "limit": limit}
        if request.url.path.endswith("/vintagedates"):
            return httpx.Response(
                200, json={**top, "count": len(in_window), "vintage_dates": in_window[offset : offset + limit]}
            )
        if len(in_window) > self.cap:
            return self.error(
                400,
                f"Bad Request.  There are {len(in_window)} vintage dates in the specified real-time period: {rs} to "
                f"{re}.  This exceeds the maximum number of vintage dates allowed ({self.cap}).",
            )
        rows = [
            {**r, "realtime_start": max(r["realtime_start"], rs), "realtime_end": min(r["realtime_end"], re)}
            for r in self.rows
            if r["realtime_start"] <= re and r["realtime_end"] >= rs
        ]
        rows.sort(key=lambda r: (r["date"], r["realtime_start"]))
        return httpx.Response(200, json={**top, "count": len(rows), "observations": rows[offset : offset + limit]})

    @staticmethod
    def error(status: int, message: str) -> httpx.Response:
        return httpx.Response(status, json={"error_code": status, "error_message": message})


def fetch_parse(fake: FakeFred, raw_params: dict[str, Any], tmp: Path, **kw: Any) -> tuple[list[Part], list[dict]]:
    with Http(transport=httpx.MockTransport(fake), max_tries=1) as http:
        ctx = ctx_for(http, "https://api.stlouisfed.org", tmp, **kw)
        parts = SOURCE.plan(SOURCE.validate_params(raw_params), ctx)
        records = []
        for part in parts:
            with SOURCE.fetch(part, ctx).open() as f:
                records += list(SOURCE.parse(f, part))
    return parts, records


def real_gdp_vintages() -> list[dict[str, str]]:
    """GDP's real vintages up to 2019-01-01; those still open then are open-ended (as FRED would say today)."""
    doc = json.loads(fixture("pyfredapi/series_observations_GDP_asof_2019-01-01.json").read_bytes())
    return [
        {**o, "realtime_end": LATEST if o["realtime_end"] == "2019-01-01" else o["realtime_end"]}
        for o in doc["observations"]
    ]


def facts(records: list[dict[str, Any]]) -> Counter[tuple[str, str, Any]]:
    return Counter((r["date"].isoformat(), r["realtime_start"].isoformat(), r["value"]) for r in records)


def test_windows_over_2000_vintages_are_cut_and_nothing_is_lost_or_doubled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """324 real GDP vintages, a cap of 50 per request (FRED's is 2000): 7 requests, the same 2902 vintages."""
    rows = real_gdp_vintages()
    fake = FakeFred(rows, today="2019-01-02", cap=50)
    monkeypatch.setattr(fred_mod, "MAX_VINTAGES_PER_REQUEST", 50)
    _, records = fetch_parse(
        fake, {"series": "GDP", "realtime_start": EARLIEST, "realtime_end": "2019-01-01"}, tmp_path
    )
    observation_calls = [q for q in fake.queries if q["path"].endswith("/observations")]
    assert len(observation_calls) == 7  # ceil(324 / 49)
    assert facts(records) == facts(
        parse_bytes(fixture("pyfredapi/series_observations_GDP_asof_2019-01-01.json").read_bytes())
    )
    assert len(records) == 2902


def test_incremental_runs_pick_up_new_and_revised_observations_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = real_gdp_vintages()
    monkeypatch.setattr(fred_mod, "MAX_VINTAGES_PER_REQUEST", 100)
    fake = FakeFred(rows, today="2019-01-02", cap=100)
    # run 1 on 2010-06-01 (St. Louis): everything published up to 2010-05-31
    (p1,), first = fetch_parse(fake, {"series": "GDP"}, tmp_path / "1", now=datetime(2010, 6, 1, 12, tzinfo=UTC))
    cursor = SOURCE.watermark(p1, len(first))
    assert cursor == "2010-05-31" and all(r["realtime_start"].isoformat() <= cursor for r in first)
    # run 2 on 2019-01-02: only vintages after the cursor; the ones already valid at it are not fetched twice
    state = SourceState(cursors={"GDP": cursor})
    (p2,), second = fetch_parse(
        fake, {"series": "GDP"}, tmp_path / "2", state=state, now=datetime(2019, 1, 2, 12, tzinfo=UTC)
    )
    assert p2.key == "GDP.after_2010-05-31" and all(r["realtime_start"].isoformat() > cursor for r in second)
    revised = {r["date"] for r in second if r["date"].isoformat() < "2010-01-01"}
    assert revised, "a comprehensive revision after 2010 revises old quarters too"
    assert facts(first) + facts(second) == facts([{**r, **_dates(r)} for r in rows])
    # run 3 the same day: no vintage after the new cursor, so no observations are asked for
    fake.queries.clear()
    state = SourceState(cursors={"GDP": SOURCE.watermark(p2, len(second)) or ""})
    _, third = fetch_parse(
        fake, {"series": "GDP"}, tmp_path / "3", state=state, now=datetime(2019, 1, 2, 12, tzinfo=UTC)
    )
    assert third == [] and [q["path"] for q in fake.queries] == ["/fred/series/vintagedates"]


def _dates(r: dict[str, str]) -> dict[str, Any]:
    return {
        "date": date.fromisoformat(r["date"]),
        "realtime_start": date.fromisoformat(r["realtime_start"]),
        "value": None if r["value"] == "." else float(r["value"]),
    }


def test_long_answers_are_paged_with_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = json.loads((SAMPLES / "fred" / "observations_GDP.json").read_bytes())["observations"]
    fake = FakeFred(rows, today="2024-07-01")
    monkeypatch.setattr(fred_mod, "OBSERVATIONS_LIMIT", 5)
    _, records = fetch_parse(fake, {"series": "GDP"}, tmp_path)
    offsets = [q.get("offset") for q in fake.queries if q["path"].endswith("/observations")]
    assert offsets == [None, "5", "10"] and len(records) == 13


def test_an_answer_that_changes_while_paging_is_transient(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = json.loads((SAMPLES / "fred" / "observations_GDP.json").read_bytes())["observations"]
    fake = FakeFred(rows, today="2024-07-01")
    monkeypatch.setattr(fred_mod, "OBSERVATIONS_LIMIT", 5)

    def grow(request: httpx.Request) -> httpx.Response | None:
        if request.url.params.get("offset") == "5":
            fake.rows = [*rows, obs("2024-04-01", "2024-06-28", LATEST, "28500.0")]
        return None

    fake.override = grow
    with pytest.raises(TransientError, match="changed while paging"):
        fetch_parse(fake, {"series": "GDP"}, tmp_path)


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (
            httpx.Response(200, json={"error_code": 400, "error_message": "Bad Request.  The series does not exist."}),
            PermanentError,
            "does not exist",
        ),
        (httpx.Response(200, content=b"<html>down for maintenance</html>"), TransientError, "not JSON"),
        (
            httpx.Response(429, json={"error_code": 429, "error_message": "Too Many Requests.  Exceeded Rate Limit"}),
            TransientError,
            r"rate limit .* Too Many Requests\. Exceeded Rate Limit",
        ),
        (httpx.Response(500, text="Internal Server Error"), TransientError, "FRED answered 500"),
        (
            httpx.Response(
                400,
                json={
                    "error_code": 400,
                    "error_message": "Bad Request.  Variable observation_start is not a YYYY-MM-DD formatted date.",
                },
            ),
            PermanentError,
            "refused the request for series GDP",
        ),
    ],
)
def test_upstream_errors_map_to_the_error_tree(
    tmp_path: Path, answer: httpx.Response, error: type[IngestError], match: str
) -> None:
    fake = FakeFred([], today="2024-07-01")
    fake.override = lambda request: answer
    with pytest.raises(error, match=match) as err:
        fetch_parse(fake, {"series": "GDP"}, tmp_path)
    assert KEY not in err.value.message


# ---- 6. the secret ---------------------------------------------------------------------------------------
def test_missing_key_fails_fast_naming_the_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TRIBUTARY_SECRET_FRED_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="FRED_API_KEY"):
        load_secrets(SOURCE)
    monkeypatch.setenv("TRIBUTARY_SECRET_FRED_API_KEY", KEY)
    assert load_secrets(SOURCE) == {"FRED_API_KEY": KEY}
    with Http() as http, pytest.raises(ConfigError, match="TRIBUTARY_SECRET_FRED_API_KEY"):
        ctx = ctx_for(http, "http://127.0.0.1:9", tmp_path, key="")
        SOURCE.fetch(plan({"series": ["GDP"]})[0], ctx)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, b'{"error_code":401,"error_message":"Unauthorized"}'),
        (403, b"<html>Forbidden</html>"),
        (
            400,
            b'{"error_code":400,"error_message":"Bad Request.  The value for variable api_key is not registered.  '
            b'Read https://fred.stlouisfed.org/docs/api/api_key.html for more information."}',
        ),
    ],
)
def test_refused_key_is_permanent_names_the_secret_and_never_leaks_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, status: int, body: bytes
) -> None:
    route = {
        "path": "/fred/series/vintagedates",
        "query": {"series_id": "GDP"},
        "file": "refused.json",
        "status": status,
    }
    root = replay_dir(tmp_path / "replay", [route])
    (root / "fred" / "refused.json").write_bytes(body)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # setup_logging() quiets httpx; this test reads its lines
    with ReplayServer(root) as server, Http(max_tries=1) as http, pytest.raises(PermanentError) as err:
        run_job({"series": ["GDP"]}, http, server.url + "/fred", tmp_path, state=SourceState())
    assert "FRED refused the API key" in err.value.message and "FRED_API_KEY" in err.value.message
    assert KEY not in err.value.message and KEY not in str(err.value.__context__)
    assert "api_key=***" in caplog.text and KEY not in caplog.text


def test_key_never_in_output_names_logs_or_connection_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")
    root = replay_dir(tmp_path / "replay")
    with ReplayServer(root) as server, Http(max_tries=1) as http:
        results, store = run_job({"series": ["GDP"]}, http, server.url + "/fred", tmp_path, state=SourceState())
    names = [o for r in results.values() for o in r.outputs] + [str(p) for p in store.root.rglob("*")]
    assert not any(KEY in n for n in names)
    assert KEY not in caplog.text
    for f in store.root.rglob("*"):
        assert not f.is_file() or KEY.encode() not in f.read_bytes()
    with Http(max_tries=1) as http, pytest.raises(TransientError) as err:
        SOURCE.fetch(plan({"series": ["GDP"]})[0], ctx_for(http, "http://127.0.0.1:9", tmp_path / "x"))
    assert KEY not in err.value.message and "127.0.0.1:9/fred/series/vintagedates" in err.value.message


def test_http_error_mapping_redacts_whatever_it_is_given() -> None:
    exc = UpstreamPermanent(400, "https://x/fred", excerpt=f"api_key={KEY} is odd")
    mapped = http_error(exc, "GDP", KEY)
    assert KEY not in mapped.message and "FRED refused the API key" in mapped.message
    assert fred_error(503, "busy", "GDP").kind == "transient"


# ---- live (opt-in: -m live) -------------------------------------------------------------------------------
@pytest.mark.live
def test_live_recent_gdp(tmp_path: Path) -> None:
    if not LIVE_KEY:
        pytest.skip("set FRED_API_KEY (or TRIBUTARY_SECRET_FRED_API_KEY) to run the live FRED test")
    with Http(rate=Fred.http_rate, name="fred") as http:
        ctx = ctx_for(http, Fred.default_base_url, tmp_path, now=datetime.now(UTC), key=LIVE_KEY)
        cutoff = (date.today() - timedelta(days=400)).isoformat()
        (part,) = SOURCE.plan(SOURCE.validate_params({"series": "GDP", "observation_start": cutoff}), ctx)
        with SOURCE.fetch(part, ctx).open() as f:
            records = list(SOURCE.parse(f, part))
    assert records and all(r["series_id"] == "GDP" for r in records)
