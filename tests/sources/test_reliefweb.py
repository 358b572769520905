"""ReliefWeb: the parser on the project's samples and the real v1 capture, params, plan, fetch + write."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.parquet as pq
import pytest

from common.core.errors import BadParams, PermanentError, TransientError
from common.core.schema import arrow_schema
from common.gcp.objects import LocalStore
from common.local.recorded import ReplayServer
from common.local.samples import HERE as SAMPLES
from common.runtime.ingest import load_secrets, run_part
from common.sources.base import Context, Part, SourceState
from common.sources.http import Http
from common.sources.reliefweb import (
    APPNAME_ENV,
    DISASTERS,
    INDEX_LAG,
    REPORTS,
    ReliefWeb,
    ReliefWebParams,
    cursor_name,
    parse_pages,
)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
SAMPLE_DIR = SAMPLES / "reliefweb"
SOURCE = ReliefWeb()
NOW = datetime(2024, 1, 20, 12, 7, 30, tzinfo=UTC)
DEMO_WINDOW = ("2024-01-15T00:00:00+00:00", "2024-01-16T00:00:00+00:00")


def real(name: str) -> Path:
    path = FIXTURES / "reliefweb" / name
    if not path.exists():
        pytest.skip(f"../shared/fixtures not present: {path} is needed for real-data conformance")
    return path


def ndjson(*files: Path) -> bytes:
    """Pages as fetch stores them: each JSON body compacted onto one line."""
    return b"".join(orjson.dumps(json.loads(f.read_bytes())) + b"\n" for f in files)


def parse(data: bytes, kind: str = "reports", window: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    after, until = window or (None, None)
    return list(parse_pages(io.BytesIO(data), kind, after=after, until=until))


def ctx_for(http: Http, base_url: str, workdir: Path, cursors: dict[str, str] | None = None, now=NOW) -> Context:
    workdir.mkdir(parents=True, exist_ok=True)
    return Context(
        http=http, base_url=base_url, workdir=workdir, state=SourceState(cursors=dict(cursors or {})), now=now
    )


def replay_root(tmp_path: Path) -> Path:
    root = tmp_path / "replay"
    shutil.copytree(SAMPLE_DIR, root / "reliefweb")
    return root


def part_for(stream: str = "reports", window: tuple[str, str] = DEMO_WINDOW, **params: Any) -> Part:
    return Part(
        key=f"{stream}.test",
        stream=stream,
        cursor=stream,
        params={
            "after": window[0],
            "until": window[1],
            "countries": [],
            "appname": "tributary",
            "page_size": 1000,
            "max_pages": 20,
            **params,
        },
    )


def stored(root: Path, stream: str = "reports") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for f in sorted((root / "normalized" / "reliefweb" / stream).rglob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows


# ---- 1. parse on the project's samples ------------------------------------------------------------------
def test_parse_sample_pages_keeps_the_window_and_types() -> None:
    data = ndjson(SAMPLE_DIR / "reports_page1.json", SAMPLE_DIR / "reports_page2.json")
    everything = parse(data)
    assert [r["id"] for r in everything] == [4030001, 4030117, 4030250]
    # The first report changed exactly at the window's start: the previous window stored it.
    records = parse(data, window=DEMO_WINDOW)
    assert [r["id"] for r in records] == [4030117, 4030250]
    first, last = records
    assert first["title"] == "Nepal and India: Cold Wave DREF Operation"
    assert first["date_changed"] == datetime(2024, 1, 15, 8, 30, 5, tzinfo=UTC)
    assert first["date_original"] == datetime(2024, 1, 14, tzinfo=UTC)
    assert json.loads(first["source_shortnames"]) == ["IFRC", "OCHA"]
    assert json.loads(first["country_iso3"]) == ["npl", "ind"]
    assert first["primary_country_iso3"] == "npl"
    assert json.loads(first["disaster_glides"]) == ["CW-2024-000005-NPL"]
    assert first["api_href"] == "https://api.reliefweb.int/v2/reports/4030117"
    # Missing fields are None, never "" or "[]".
    assert last["origin"] is None and last["theme_names"] is None and last["language_codes"] is None
    assert last["disaster_glides"] is None and last["disaster_type_names"] is None
    assert set(first) == {c.name for c in REPORTS}


def test_parse_sample_disasters() -> None:
    records = parse(ndjson(SAMPLE_DIR / "disasters_page1.json"), "disasters", DEMO_WINDOW)
    assert [(r["id"], r["glide"], r["status"]) for r in records] == [
        (52001, "CW-2024-000005-NPL", "current"),
        (52003, "FL-2024-000007-IND", "alert"),
    ]
    assert records[0]["date_event"] == datetime(2024, 1, 10, tzinfo=UTC)
    assert records[1]["date_event"] is None
    assert json.loads(records[1]["type_names"]) == ["Flood", "Flash Flood"]
    assert set(records[0]) == {c.name for c in DISASTERS}


def test_parse_empty_result_and_blank_lines() -> None:
    assert parse(ndjson(SAMPLE_DIR / "reports_empty.json") + b"\n\n") == []
    assert parse(b"") == []


def test_records_fit_the_declared_schema() -> None:
    import pyarrow as pa

    for kind, file, cols in (
        ("reports", "reports_page1.json", REPORTS),
        ("disasters", "disasters_page1.json", DISASTERS),
    ):
        batch = pa.RecordBatch.from_pylist(parse(ndjson(SAMPLE_DIR / file), kind), schema=arrow_schema(cols))
        assert batch.num_rows == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"time":3,"status":400,"error":{"type":"BadRequest","message":"Invalid limit"}}',
            r"status 400.*Invalid limit",
        ),
        (b'{"totalCount":1,"count":1}', r"not a ReliefWeb list response \(no `data` list"),
        (b'{"totalCount":1,"count":1,"data":[{"fields":{}}]}', r"data\[0\] is not an item with an id"),
        (b'{"totalCount":1,"count":1,"data":[{"id":"x1","fields":{}}]}', r"item id 'x1' is not an integer"),
        (b'{"data":[{"id":"1","fields":{"date":{"changed":"yesterday"}}}]}', r"item 1: date 'yesterday' is not ISO"),
        (b"[1, 2]", r"a JSON list, not a ReliefWeb list response"),
        (b'{"data": [', r"reports page 1: not JSON"),
    ],
)
def test_parse_rejects_bad_payloads_with_a_readable_message(body: bytes, message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        parse(body)


# ---- 2. conformance on the real captured response -------------------------------------------------------
REAL_V1 = "v1_reports_country-NPL_from-2020-09-10_thedeep.json"


def test_conformance_real_v1_reports_page() -> None:
    path = real(REAL_V1)
    payload = json.loads(path.read_bytes())
    records = parse(ndjson(path))
    assert len(records) == payload["count"] == len(payload["data"]) == 10
    assert payload["totalCount"] == 14  # a first page: fetch would ask for offset=10 next
    for record, item in zip(records, payload["data"], strict=True):
        fields = item["fields"]
        assert record["id"] == int(item["id"])
        assert record["title"] == fields["title"]
        assert record["url_alias"] == fields["url_alias"]
        assert record["api_href"] == item["href"]
        assert record["date_original"] == datetime.fromisoformat(fields["date"]["original"])
        assert json.loads(record["source_names"]) == [s["name"] for s in fields["source"]]
        assert json.loads(record["source_shortnames"]) == [s["shortname"] for s in fields["source"]]
        assert json.loads(record["fields_json"]) == fields
        # That client asked only for date.original: the other dates are missing, so None.
        assert record["date_changed"] is None and record["date_created"] is None
        assert record["country_iso3"] is None and record["status"] is None
    assert records[0]["id"] == 3670885
    assert records[0]["source_names"] == '["World Bank"]'


def test_conformance_real_v1_pretty_body_is_one_line_once_fetched(tmp_path: Path) -> None:
    """The capture is indented over many lines; fetch stores each body as one NDJSON line."""
    path = real(REAL_V1)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["appname"] == "tributary"
        return httpx.Response(200, content=path.read_bytes().replace(b'"totalCount": 14', b'"totalCount": 10'))

    with Http(transport=httpx.MockTransport(handler)) as http:
        ctx = ctx_for(http, "https://api.reliefweb.int/v1", tmp_path / "w")
        raw = SOURCE.fetch(part_for(window=("2020-09-10T00:00:00+00:00", "2020-09-18T00:00:00+00:00")), ctx)
    lines = raw.path.read_bytes().splitlines()
    assert len(lines) == 1 and len(json.loads(lines[0])["data"]) == 10


def test_conformance_real_v1_truncated_body_fails_readably() -> None:
    data = ndjson(real(REAL_V1))
    with pytest.raises(PermanentError, match=r"reports page 1: not JSON"):
        parse(data[: len(data) // 2])


# ---- 3. params --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"streams": ["jobs"]}, "params.streams.0"),
        ({"streams": []}, "params.streams"),
        ({"since": "2024-01-02T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, "params.until"),
        ({"since": "not a date"}, "params.since"),
        ({"countries": ["nepal"]}, "params.countries"),
        ({"page_size": 1001}, "params.page_size"),
        ({"max_pages": 0}, "params.max_pages"),
        ({"window_hours": 0}, "params.window_hours"),
        ({"appname": "has spaces"}, "params.appname"),
        ({"appnme": "typo"}, "params.appnme"),
    ],
)
def test_params_errors_name_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(BadParams) as info:
        SOURCE.validate_params(raw)
    assert info.value.field == field
    assert info.value.message.startswith(field)


def test_params_normalize() -> None:
    p = SOURCE.validate_params({"countries": ["NPL", "ind", "npl"], "since": "2024-01-01T05:30:00+05:30"})
    assert isinstance(p, ReliefWebParams)
    assert p.countries == ("ind", "npl")
    assert p.since == datetime(2024, 1, 1, tzinfo=UTC)


def test_appname_default_env_and_param(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SOURCE.appname(ReliefWebParams()) == "tributary"
    monkeypatch.setenv(APPNAME_ENV, "acme-monitor-x7")
    assert SOURCE.appname(ReliefWebParams()) == "acme-monitor-x7"
    assert SOURCE.appname(ReliefWebParams(appname="mine")) == "mine"


# ---- 4. plan: windows, cursors, dedup ---------------------------------------------------------------------
def plan(raw: dict[str, Any], cursors: dict[str, str] | None = None, now: datetime = NOW) -> list[Part]:
    ctx = Context(
        http=None, base_url="http://unused", workdir=Path("."), state=SourceState(cursors=cursors or {}), now=now
    )  # type: ignore[arg-type]
    return SOURCE.plan(SOURCE.validate_params({"streams": ["reports"], **raw}), ctx)


def test_plan_incremental_starts_exactly_at_the_cursor() -> None:
    (part,) = plan({}, {"reports": "2024-01-19T00:00:00+00:00"})
    assert part.params["after"] == "2024-01-19T00:00:00+00:00"
    # Ends before now by the index lag, on a whole minute.
    assert part.params["until"] == "2024-01-20T11:52:00+00:00"
    assert datetime.fromisoformat(part.params["until"]) <= NOW - INDEX_LAG
    assert part.key == "reports.20240119T000000-20240120T115200"
    assert part.cursor == "reports" and part.partition == "2024/01/19"
    assert SOURCE.watermark(part, 0) == part.params["until"]  # an empty window still moves the cursor


def test_plan_first_run_looks_back_one_day() -> None:
    (part,) = plan({})
    assert part.params["after"] == "2024-01-19T11:52:00+00:00"


def test_default_params_cover_both_streams_each_on_its_own_cursor() -> None:
    cursors = {"reports": "2024-01-20T10:00:00+00:00", "disasters": "2024-01-19T10:00:00+00:00"}
    parts = SOURCE.plan(
        SOURCE.validate_params(dict(SOURCE.daily_params)),
        Context(http=None, base_url="", workdir=Path("."), state=SourceState(cursors=cursors), now=NOW),  # type: ignore[arg-type]
    )
    assert [(p.stream, p.cursor, p.params["after"]) for p in parts] == [
        ("reports", "reports", cursors["reports"]),
        ("disasters", "disasters", cursors["disasters"]),
    ]


def test_backfill_children_are_contiguous_explicit_windows() -> None:
    params = SOURCE.validate_params({"countries": ["NPL"]})
    ctx = Context(http=None, base_url="", workdir=Path("."), state=SourceState(), now=NOW)  # type: ignore[arg-type]
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 20, tzinfo=UTC)
    children = SOURCE.backfill(start, end, params, ctx)
    assert [(c["since"][:10], c["until"][:10]) for c in children] == [
        ("2024-01-01", "2024-01-08"),
        ("2024-01-08", "2024-01-15"),
        ("2024-01-15", "2024-01-20"),
    ]
    assert all(c["countries"] == ["npl"] for c in children)
    for child in children:  # each child is a valid job, identified by its window (no "as_of")
        assert "as_of" not in SOURCE.dedup_params(SOURCE.validate_params(child), NOW)
    with pytest.raises(BadParams, match="range is empty"):
        SOURCE.backfill(end, start, params, ctx)


def test_plan_splits_a_backfill_into_contiguous_windows() -> None:
    parts = plan(
        {"since": "2024-01-01T00:00:00Z", "until": "2024-01-20T00:00:00Z", "streams": ["reports", "disasters"]}
    )
    assert [p.stream for p in parts] == ["reports"] * 3 + ["disasters"] * 3
    reports = parts[:3]
    assert [(p.params["after"][:10], p.params["until"][:10]) for p in reports] == [
        ("2024-01-01", "2024-01-08"),
        ("2024-01-08", "2024-01-15"),
        ("2024-01-15", "2024-01-20"),
    ]
    assert [p.index for p in parts] == list(range(6)) and {p.total for p in parts} == {6}
    assert len({p.key for p in parts}) == 6
    assert [p.key for p in parts] == [
        p.key
        for p in plan(
            {"since": "2024-01-01T00:00:00Z", "until": "2024-01-20T00:00:00Z", "streams": ["reports", "disasters"]}
        )
    ]
    assert len(plan({"since": "2024-01-01T00:00:00Z", "until": "2024-01-20T00:00:00Z", "window_hours": 24})) == 19


def test_plan_clips_a_future_until_and_handles_a_caught_up_cursor() -> None:
    (part,) = plan({"since": "2024-01-20T00:00:00Z", "until": "2024-02-01T00:00:00Z"})
    assert part.params["until"] == "2024-01-20T11:52:00+00:00"
    assert plan({}, {"reports": "2024-01-20T11:52:00+00:00"}) == []


def test_plan_explicit_window_moves_the_cursor_only_without_a_gap() -> None:
    cursors = {"reports": "2024-01-10T00:00:00+00:00"}
    gap = plan({"since": "2024-01-12T00:00:00Z", "until": "2024-01-13T00:00:00Z"}, cursors)
    assert [p.cursor for p in gap] == [None]
    overlap = plan({"since": "2024-01-09T00:00:00Z", "until": "2024-01-13T00:00:00Z"}, cursors)
    assert [p.cursor for p in overlap] == ["reports"]


def test_plan_country_filter_has_its_own_cursor_and_key() -> None:
    (part,) = plan({"countries": ["NPL", "IND"]}, {"reports:ind,npl": "2024-01-20T00:00:00+00:00"})
    assert cursor_name("reports", ("ind", "npl")) == part.cursor == "reports:ind,npl"
    assert part.key.endswith(".ind-npl") and part.params["after"] == "2024-01-20T00:00:00+00:00"
    query = dict(SOURCE.query(part, 0))
    assert query["filter[conditions][1][field]"] == "country.iso3"
    assert [v for k, v in SOURCE.query(part, 0) if k == "filter[conditions][1][value][]"] == ["ind", "npl"]


def test_dedup_params_one_job_per_hour_when_incremental() -> None:
    p = SOURCE.validate_params({})
    a = SOURCE.dedup_params(p, datetime(2024, 1, 20, 12, 5, tzinfo=UTC))
    b = SOURCE.dedup_params(p, datetime(2024, 1, 20, 12, 55, tzinfo=UTC))
    c = SOURCE.dedup_params(p, datetime(2024, 1, 20, 13, 5, tzinfo=UTC))
    assert a == b != c
    fixed = SOURCE.validate_params(SOURCE.demo_params)
    assert "as_of" not in SOURCE.dedup_params(fixed, NOW)


def test_query_filters_sorts_and_pages() -> None:
    query = SOURCE.query(part_for(), 1000)
    d = dict(query)
    assert d["appname"] == "tributary" and d["offset"] == 1000 and d["limit"] == 1000
    assert d["filter[conditions][0][field]"] == "date.changed"
    assert (d["filter[conditions][0][value][from]"], d["filter[conditions][0][value][to]"]) == DEMO_WINDOW
    assert [v for k, v in query if k == "sort[]"] == ["date.changed:asc", "id:asc"]
    assert "date.changed" in [v for k, v in query if k == "fields[include][]"]


# ---- 5. fetch + parse + write through run_part, against the replay server -------------------------------
def test_demo_params_run_offline_and_a_second_run_adds_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "out")
    with ReplayServer(replay_root(tmp_path)) as server, Http(rate=SOURCE.http_rate, name="reliefweb") as http:
        base = server.url + "/reliefweb"
        ctx = ctx_for(http, base, tmp_path / "w1")
        (part,) = SOURCE.plan(SOURCE.validate_params(SOURCE.demo_params), ctx)
        first = run_part(SOURCE, part, ctx, store)
        assert server.hits["/reliefweb/reports"] == 2  # two pages, one raw file
        assert first.records == 2 and first.cursors == {"reports": DEMO_WINDOW[1]}
        raw_lines = (tmp_path / "out" / "raw" / "reliefweb" / "reports" / "dt=2024-01-15").glob("*.ndjson")
        assert [len(f.read_bytes().splitlines()) for f in raw_lines] == [2]
        # The same job again (a redelivered task): the same objects, overwritten.
        again = run_part(SOURCE, part, ctx_for(http, base, tmp_path / "w2"), store)
        assert again.outputs == first.outputs
        # The next incremental run, upstream unchanged: strictly after the cursor, nothing new.
        later = ctx_for(
            http, base, tmp_path / "w3", cursors=first.cursors, now=datetime(2024, 1, 16, 0, 20, tzinfo=UTC)
        )
        (nxt,) = SOURCE.plan(SOURCE.validate_params({"streams": ["reports"]}), later)
        assert nxt.params["after"] == DEMO_WINDOW[1]
        assert run_part(SOURCE, nxt, later, store).records == 0
    rows = stored(tmp_path / "out")
    assert sorted(r["id"] for r in rows) == [4030117, 4030250]
    schema = json.loads((tmp_path / "out" / "normalized" / "reliefweb" / "reports" / "schema.json").read_text())
    assert [c["name"] for c in schema] == [c.name for c in REPORTS]


def test_upstream_answering_old_changes_again_adds_no_duplicate(tmp_path: Path) -> None:
    """Even if ReliefWeb served the same pages for the next window, the window bounds drop them."""
    files = [SAMPLE_DIR / "reports_page1.json", SAMPLE_DIR / "reports_page2.json"]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=files[0 if request.url.params["offset"] == "0" else 1].read_bytes())

    store = LocalStore(tmp_path / "out")
    with Http(transport=httpx.MockTransport(handler)) as http:
        base = "https://api.reliefweb.int/v2"
        first = run_part(SOURCE, part_for(), ctx_for(http, base, tmp_path / "a"), store)
        nxt = part_for(window=(DEMO_WINDOW[1], "2024-01-17T00:00:00+00:00")).model_copy(update={"key": "reports.next"})
        assert run_part(SOURCE, nxt, ctx_for(http, base, tmp_path / "b"), store).records == 0
    assert first.records == 2 and len(stored(tmp_path / "out")) == 2


def test_disasters_stream_through_run_part(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "out")
    with ReplayServer(replay_root(tmp_path)) as server, Http() as http:
        result = run_part(
            SOURCE, part_for("disasters"), ctx_for(http, server.url + "/reliefweb", tmp_path / "w"), store
        )
    assert result.records == 2
    assert sorted(r["glide"] for r in stored(tmp_path / "out", "disasters")) == [
        "CW-2024-000005-NPL",
        "FL-2024-000007-IND",
    ]


def test_max_pages_guard(tmp_path: Path) -> None:
    with ReplayServer(replay_root(tmp_path)) as server, Http() as http:
        ctx = ctx_for(http, server.url + "/reliefweb", tmp_path / "w")
        with pytest.raises(PermanentError, match=r"3 reports changed in this window, more than max_pages=1"):
            SOURCE.fetch(part_for(page_size=2, max_pages=1), ctx)


def pages_transport(pages: list[dict[str, Any]], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        offset = int(request.url.params["offset"])
        return httpx.Response(200, json=pages[0 if offset == 0 else 1])

    return httpx.MockTransport(handler)


def _page(total: int, ids: list[int]) -> dict[str, Any]:
    data = [{"id": str(i), "fields": {"date": {"changed": "2024-01-15T10:00:00+00:00"}}} for i in ids]
    return {"totalCount": total, "count": len(ids), "data": data}


@pytest.mark.parametrize(
    ("pages", "message"),
    [
        ([_page(3, [1, 2]), _page(2, [3])], r"totalCount moved from 3 to 2 while paging"),
        ([_page(3, [1, 2]), _page(3, [])], r"empty page at offset 2 of 3"),
    ],
)
def test_window_changing_while_paging_is_transient(tmp_path: Path, pages: list[dict[str, Any]], message: str) -> None:
    seen: list[httpx.Request] = []
    with Http(transport=pages_transport(pages, seen)) as http, pytest.raises(TransientError, match=message):
        SOURCE.fetch(part_for(page_size=2), ctx_for(http, "https://api.reliefweb.int/v2", tmp_path / "w"))
    assert [r.url.params["offset"] for r in seen] == ["0", "2"]


def test_non_json_body_is_transient(tmp_path: Path) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, text="<html>maintenance</html>"))
    with Http(transport=transport) as http, pytest.raises(TransientError, match="not JSON"):
        SOURCE.fetch(part_for(), ctx_for(http, "https://api.reliefweb.int/v2", tmp_path / "w"))


# ---- 6. secrets and the appname -------------------------------------------------------------------------
def test_no_secret_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(APPNAME_ENV, raising=False)
    assert SOURCE.secrets == ()
    assert load_secrets(SOURCE) == {}


@pytest.mark.parametrize("status", [401, 403])
def test_refused_appname_is_permanent_and_says_how_to_fix(tmp_path: Path, status: int) -> None:
    make: Callable[[httpx.Request], httpx.Response] = lambda r: httpx.Response(status, text="Forbidden")  # noqa: E731
    with Http(transport=httpx.MockTransport(make)) as http:
        ctx = ctx_for(http, "https://api.reliefweb.int/v2", tmp_path / "w")
        with pytest.raises(PermanentError, match=rf"refused appname 'tributary' \(HTTP {status}\).*params.appname"):
            SOURCE.fetch(part_for(), ctx)


def test_refused_appname_through_the_replay_server(tmp_path: Path) -> None:
    with ReplayServer(replay_root(tmp_path)) as server, Http() as http:
        ctx = ctx_for(http, server.url + "/reliefweb", tmp_path / "w")
        with pytest.raises(PermanentError, match=r"refused appname 'unapproved-app' \(HTTP 403\)") as info:
            SOURCE.fetch(part_for(appname="unapproved-app"), ctx)
    assert "?" not in info.value.message  # the URL in the message carries no query string


# ---- live (opt-in: -m live; needs an approved appname) ------------------------------------------------
@pytest.fixture
def opted_in(request: pytest.FixtureRequest) -> None:
    """Live tests run only when selected with ``-m live``, never by a plain run of this file."""
    expr = request.config.getoption("-m") or ""
    if "live" not in expr or "not live" in expr:
        pytest.skip("live test: run with -m live")


@pytest.mark.live
@pytest.mark.usefixtures("opted_in")
def test_live_last_hour_of_reports(tmp_path: Path) -> None:
    import os

    if not os.environ.get(APPNAME_ENV):
        pytest.skip(f"set {APPNAME_ENV} to a ReliefWeb-approved appname")
    now = datetime.now(UTC)
    with Http(rate=SOURCE.http_rate, name="reliefweb") as http:
        ctx = ctx_for(http, SOURCE.default_base_url, tmp_path / "w", now=now)
        params = SOURCE.validate_params({"since": (now - timedelta(hours=3)).isoformat(), "page_size": 100})
        part = SOURCE.plan(params, ctx)[0]
        raw = SOURCE.fetch(part, ctx)
        with raw.open() as f:
            records = list(SOURCE.parse(f, part))
    assert all(r["date_changed"] is not None for r in records)
