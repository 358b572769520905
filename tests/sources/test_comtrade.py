"""UN Comtrade source: parsing (own samples and real captured answers), params, planning, fetch through replay."""

from __future__ import annotations

import io
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pyarrow.parquet as pq
import pytest
from croniter import croniter

from common.core.errors import BadParams, ConfigError, PermanentError, TransientError
from common.core.schema import TYPES, arrow_type
from common.gcp.objects import LocalStore
from common.local.recorded import ReplayServer
from common.local.samples import HERE as SAMPLES_ROOT
from common.runtime.ingest import load_secrets, run_part
from common.sources.base import Context, Part, SourceState, iter_records
from common.sources.comtrade import (
    COLUMNS,
    DEFAULT_REPORTERS,
    KEY_HEADER,
    SECRET,
    Comtrade,
    ComtradeParams,
    check_answer,
    parse_answers,
    split_query,
)
from common.sources.http import Http

SAMPLES = SAMPLES_ROOT / "comtrade"
FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
KEY = "test-key-0123456789abcdef"
SOURCE = Comtrade()
NAMES = [c.name for c in COLUMNS]
NATURAL_KEY = ("typeCode", "freqCode", "period", "reporterCode", "flowCode", "partnerCode", "partner2Code", "cmdCode")


def fixture(rel: str) -> Path:
    path = FIXTURES / rel
    if not path.is_file():
        pytest.skip(f"../shared/fixtures not present: {path} (real captured Comtrade answers)")
    return path


def parse_file(path: Path) -> list[dict]:
    with path.open("rb") as f:
        return list(parse_answers(f, label=path.name))


def parse_bytes(data: bytes) -> list[dict]:
    return list(parse_answers(io.BytesIO(data), label="test"))


def params(**kw: object) -> ComtradeParams:
    p = SOURCE.validate_params(kw)
    assert isinstance(p, ComtradeParams)
    return p


def bad_field(**kw: object) -> str:
    with pytest.raises(BadParams) as info:
        SOURCE.validate_params(kw)
    assert info.value.field and info.value.message.startswith(info.value.field)
    return info.value.field


def ctx_for(base_url: str, tmp: Path, *, state: SourceState | None = None, secrets: dict | None = None, http=None):
    work = tmp / "work"
    work.mkdir(parents=True, exist_ok=True)
    return Context(
        http=http or Http(max_tries=1),
        base_url=base_url,
        workdir=work,
        state=state or SourceState(),
        now=datetime(2024, 5, 10, 7, 0, tzinfo=UTC),
        secrets={SECRET: KEY} if secrets is None else secrets,
    )


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory):
    """A replay dir with only this source's samples, plus error routes on periods the samples do not use."""
    root = tmp_path_factory.mktemp("replay")
    shutil.copytree(SAMPLES, root / "comtrade")
    routes = json.loads((SAMPLES / "_routes.json").read_text())
    path = "/data/v1/get/C/A/HS"
    routes += [
        {"path": path, "query": {"period": "2015"}, "file": "error_401_invalid_key.json", "status": 401},
        {"path": path, "query": {"period": "2016"}, "file": "error_403_quota.json", "status": 403},
        {"path": path, "query": {"period": "2017"}, "file": "error_200_synthetic.json"},
        {"path": path, "query": {"period": "2018"}, "status": 429, "headers": {"Retry-After": "1"}},
        {"path": path, "query": {"period": "2019"}, "status": 503},
    ]
    (root / "comtrade" / "_routes.json").write_text(json.dumps(routes))
    with ReplayServer(root) as server:
        yield server


def base(server: ReplayServer) -> str:
    return f"{server.url}/comtrade"


def run_all(parts: list[Part], ctx: Context, store: LocalStore) -> dict[str, str]:
    cursors: dict[str, str] = {}
    for part in parts:
        result = run_part(SOURCE, part, ctx, store)
        for k, v in result.cursors.items():
            cursors[k] = max(v, cursors.get(k, v))
    return cursors


def normalized_rows(root: Path) -> list[dict]:
    rows = []
    for f in sorted((root / "normalized" / "comtrade").rglob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows


# ------------------------------------------------------------------------------------------ 1. own samples


def test_parse_demo_sample_types_and_missing_values():
    rows = parse_file(SAMPLES / "data_C_A_HS_2022_r156_842.json")
    assert len(rows) == 4
    assert all(list(r) == NAMES for r in rows)
    assert {(r["reporterCode"], r["flowCode"]) for r in rows} == {(156, "M"), (156, "X"), (842, "M"), (842, "X")}
    usa_m = next(r for r in rows if r["reporterCode"] == 842 and r["flowCode"] == "M")
    assert usa_m["qty"] == 1250000.0 and usa_m["qtyUnitAbbr"] == "kg" and usa_m["classificationCode"] == "H5"
    chn_x = next(r for r in rows if r["reporterCode"] == 156 and r["flowCode"] == "X")
    # missing stays None, never 0
    assert chn_x["qty"] is None and chn_x["netWgt"] is None and chn_x["cifvalue"] is None
    assert chn_x["fobvalue"] == chn_x["primaryValue"] == 3593601000000.0
    assert chn_x["period"] == "2022" and chn_x["refMonth"] == 52 and chn_x["isReported"] is True
    for r in rows:
        for col in COLUMNS:
            value = r[col.name]
            expected = {"STRING": str, "INT64": int, "FLOAT64": float, "BOOL": bool}[col.type]
            assert value is None or type(value) is expected, (col.name, value)


def test_parse_monthly_sample_coerces_integral_numbers_to_float():
    rows = parse_file(SAMPLES / "data_C_M_HS_202301_r392.json")
    assert len(rows) == 2
    x = next(r for r in rows if r["flowCode"] == "X")
    assert x["primaryValue"] == 58900000000.0 and isinstance(x["primaryValue"], float)
    assert (x["period"], x["refMonth"], x["refPeriodId"], x["freqCode"]) == ("202301", 1, 20230101, "M")
    assert next(r for r in rows if r["flowCode"] == "M")["isQtyEstimated"] is True


def test_parse_ndjson_of_several_answers_and_empty_answer():
    lines = [(SAMPLES / f).read_bytes().strip() for f in ("data_C_A_HS_2021_r156.json", "data_C_A_HS_2021_r842.json")]
    lines.append((SAMPLES / "data_C_A_HS_2023_empty.json").read_bytes().strip())
    rows = parse_bytes(b"\n".join(lines) + b"\n")
    assert len(rows) == 4 and {r["reporterCode"] for r in rows} == {156, 842}
    assert parse_file(SAMPLES / "data_C_A_HS_2023_empty.json") == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["data"][0].update(reporterCode="abc"), "reporterCode is 'abc', not a valid INT64"),
        (lambda d: d["data"][1].pop("cmdCode"), "record 2: cmdCode is missing"),
        (lambda d: d["data"][0].update(primaryValue=True), "primaryValue is True, not a valid FLOAT64"),
        (lambda d: d.update(count=1), "count says 1 records but data holds 4"),
        (lambda d: d.update(count=9), "count says 9 records but data holds 4 (truncated)"),
        (lambda d: d.update(data={"x": 1}), "data is a dict, expected a list"),
        (lambda d: d.update(error="Something went wrong"), "UN Comtrade answered an error: Something went wrong"),
    ],
)
def test_parse_rejects_format_violations_with_readable_messages(mutate, message):
    doc = json.loads((SAMPLES / "data_C_A_HS_2022_r156_842.json").read_text())
    mutate(doc)
    with pytest.raises(PermanentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_bytes(json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"\n\n", "empty file"),
        (b"<html>busy</html>", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
    ],
)
def test_parse_rejects_non_answers(data, message):
    with pytest.raises(PermanentError, match=message):
        parse_bytes(data)


def test_parse_error_bodies_of_own_samples():
    with pytest.raises(PermanentError, match="Invalid parameter value: clCode"):
        parse_file(SAMPLES / "error_200_synthetic.json")
    with pytest.raises(PermanentError, match=f"refused the subscription key \\(401.*{SECRET}"):
        parse_file(SAMPLES / "error_401_invalid_key.json")
    with pytest.raises(TransientError, match="quota") as info:
        parse_file(SAMPLES / "error_403_quota.json")
    assert info.value.retry_after == 5 * 3600 + 12 * 60 + 34


def test_timeout_error_string_is_transient():
    with pytest.raises(TransientError):
        check_answer(b'{"elapsedTime":"30 secs","count":0,"data":null,"error":"Query timeout, try again later"}')


# ------------------------------------------------------------------------------------------ 2. real files

REAL_DATA = [
    ("comtrade/comtradr/data_v1_get_C_A_HS_reporter156_partners32-280-276_2010_TOTAL.json", 4),
    ("comtrade/comtradr/httptest2_pretty_data_v1_get_C_A_HS-60a6ad.json", 4),
    ("comtrade/comtradr/data_v1_get_S_A_EB_empty_result.json", 0),
    ("comtrade/comtradr/httptest2_pretty_bulk_v1_get_C_A_HS-a503f3_empty.json", 0),
]


def _as_column(raw: object, type_: str) -> object:
    if raw is None or raw == "":
        return None
    return {"STRING": str, "INT64": int, "FLOAT64": float, "BOOL": bool}[type_](raw)


@pytest.mark.parametrize(("rel", "expected"), REAL_DATA)
def test_conformance_real_answers_parse_exactly(rel, expected):
    path = fixture(rel)
    payload = json.loads(path.read_text())
    rows = parse_file(path)
    assert len(rows) == payload["count"] == len(payload["data"]) == expected
    for row, item in zip(rows, payload["data"], strict=True):
        assert set(item) == set(NAMES), "the schema holds exactly the fields of a real answer"
        for col in COLUMNS:
            assert row[col.name] == _as_column(item[col.name], col.type), col.name


def test_conformance_real_answer_values():
    rows = parse_file(fixture(REAL_DATA[0][0]))
    # partner 280 was asked for but has no data: the API silently leaves it out
    assert {r["partnerCode"] for r in rows} == {32, 276}
    deu_m = next(r for r in rows if r["partnerCode"] == 276 and r["flowCode"] == "M")
    assert deu_m["primaryValue"] == deu_m["cifvalue"] == 74251272075.0 and deu_m["fobvalue"] is None
    assert (deu_m["reporterISO"], deu_m["partnerISO"], deu_m["classificationCode"]) == ("CHN", "DEU", "H3")
    assert deu_m["refMonth"] == 52 and deu_m["qty"] is None and deu_m["qtyUnitCode"] == -1
    assert deu_m["mosCode"] == "0" and deu_m["motCode"] == 0


def test_conformance_compact_and_pretty_captures_agree():
    a = parse_file(fixture(REAL_DATA[0][0]))
    b = parse_file(fixture(REAL_DATA[1][0]))
    key = lambda r: tuple(r[k] for k in NATURAL_KEY)  # noqa: E731
    assert sorted(a, key=key) == sorted(b, key=key)


def test_conformance_real_401_names_the_key():
    with pytest.raises(PermanentError) as info:
        parse_file(fixture("comtrade/comtradr/error_401_missing_subscription_key.json"))
    msg = info.value.message
    assert "401" in msg and "missing subscription key" in msg and SECRET in msg
    assert f"TRIBUTARY_SECRET_{SECRET}" in msg


def test_conformance_bulk_listing_is_not_trade_data():
    with pytest.raises(PermanentError, match=r"bulk-file listing \(bulk/v1/get\), not trade data"):
        parse_file(fixture("comtrade/comtradr/httptest2_pretty_bulk_v1_get_C_A_HS-4f1d0f.json"))


@pytest.mark.parametrize("name", ["com_trade_world_BEEF_BRA_2015.json", "com_trade_partner_BEEF_BRA_2015.json"])
def test_conformance_legacy_v1_is_rejected_clearly(name):
    path = fixture(f"comtrade/legacy_v1/{name}")
    assert json.loads(path.read_text())["validation"]["status"]["name"] == "Ok"  # a real, successful legacy answer
    with pytest.raises(PermanentError, match=r"legacy Comtrade API payload .*retired.*data/v1/get"):
        parse_file(path)


@pytest.mark.parametrize(
    "name", ["reference_Reporters.json", "reference_ModeOfTransportCodes.json", "reference_TradeDataItems.json"]
)
def test_conformance_reference_tables_are_not_data_answers(name):
    with pytest.raises(PermanentError, match=r"not a UN Comtrade data answer .*found .*results"):
        parse_file(fixture(f"comtrade/comtradr/{name}"))


def test_conformance_default_reporters_are_real_countries():
    reporters = {
        r["reporterCode"]: r
        for r in json.loads(fixture("comtrade/comtradr/reference_Reporters.json").read_text())["results"]
    }
    for code in DEFAULT_REPORTERS:
        assert code in reporters and reporters[code]["isGroup"] is False, code
    assert reporters[842]["reporterCodeIsoAlpha3"] == "USA"  # Comtrade's code, not M49's 840


def test_conformance_defaults_match_reference_codes():
    mot = {
        r["id"]: r["text"]
        for r in json.loads(fixture("comtrade/comtradr/reference_ModeOfTransportCodes.json").read_text())["results"]
    }
    assert mot["0"] == "TOTAL modes of transport"
    assert params().mot_codes == (0,)


def test_conformance_schema_against_trade_data_items():
    items = json.loads(fixture("comtrade/comtradr/reference_TradeDataItems.json").read_text())["results"]
    documented = {i["dataItem"].lower() for i in items}
    # every column is a documented data item (the reference spells a few differently, e.g. cifValue)
    assert {n.lower() for n in NAMES} <= documented
    in_api = {i["dataItem"].lower() for i in items if i["isInDataAPICommodity"] == "True"}
    # documented for the data API but absent from real answers (see docs/sources/comtrade.md)
    assert in_api - {n.lower() for n in NAMES} == {"datasetcode"}


# ------------------------------------------------------------------------------------------ 3. params


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"reporters": [0]}, "params.reporters"),
        ({"reporters": []}, "params.reporters"),
        ({"freq": "Q"}, "params.freq"),
        ({"type_code": "S", "freq": "M", "classification": "EB"}, "params.freq"),
        ({"type_code": "S"}, "params.classification"),
        ({"classification": "EB"}, "params.classification"),
        ({"start": "202301"}, "params.start"),
        ({"start": "1950"}, "params.start"),
        ({"freq": "M", "start": "2023"}, "params.start"),
        ({"freq": "M", "start": "202313"}, "params.start"),
        ({"start": "2022", "end": "2021"}, "params.end"),
        ({"end": "2021"}, "params.end"),
        ({"flows": ["I"]}, "params.flows"),
        ({"flows": []}, "params.flows"),
        ({"cmd_codes": ["02 01"]}, "params.cmd_codes"),
        ({"customs_codes": ["X1"]}, "params.customs_codes"),
        ({"partners": []}, "params.partners"),
        ({"max_records_per_call": 0}, "params.max_records_per_call"),
        ({"max_records_per_call": 1_000_000}, "params.max_records_per_call"),
        ({"max_calls": 501}, "params.max_calls"),
        ({"reporter": [156]}, "params.reporter"),
    ],
)
def test_params_errors_name_the_field(kw, field):
    assert bad_field(**kw) == field


def test_params_are_normalised():
    p = params(
        reporters="842, 156,156", flows="x,m", freq="M", start="2023-01", end=202303, cmd_codes=["0201", "total"]
    )
    assert p.reporters == (156, 842) and p.flows == ("M", "X") and p.cmd_codes == ("0201", "TOTAL")
    assert (p.start, p.end) == ("202301", "202303")
    assert params(partners=None).partners is None


# ------------------------------------------------------------------------------------------ 4. plan


def test_plan_explicit_range_splits_by_period_and_reporter_batch(tmp_path):
    reporters = [4, 8, 12, 20, 24, 36, 76, 124, 156, 251, 276, 842]
    p = params(reporters=reporters, start="2020", end="2022", reporters_per_call=5)
    parts = SOURCE.plan(p, ctx_for("http://x", tmp_path))
    assert len(parts) == 9 and [x.index for x in parts] == list(range(9)) and {x.total for x in parts} == {9}
    assert [x.params["period"] for x in parts] == ["2020"] * 3 + ["2021"] * 3 + ["2022"] * 3
    assert [x.params["query"]["reporterCode"] for x in parts[:3]] == ["4,8,12,20,24", "36,76,124,156,251", "276,842"]
    first = parts[0]
    assert first.stream == "trade" and first.partition == "A/2020" and first.params["path"] == "/data/v1/get/C/A/HS"
    assert first.params["query"] == {
        "reporterCode": "4,8,12,20,24",
        "period": "2020",
        "partnerCode": "0",
        "partner2Code": "0",
        "cmdCode": "TOTAL",
        "flowCode": "M,X",
        "motCode": "0",
        "customsCode": "C00",
        "includeDesc": "TRUE",
        "maxRecords": "100000",
    }
    # deterministic keys; one cursor per reporter batch shared by its periods
    assert [x.key for x in SOURCE.plan(p, ctx_for("http://x", tmp_path))] == [x.key for x in parts]
    assert len({x.key for x in parts}) == 9
    assert len({x.cursor for x in parts}) == 3 and parts[0].cursor == parts[3].cursor
    assert first.key.startswith("CA-HS-2020-r4_8_12_20_24-")


def test_plan_batches_shrink_when_each_reporter_yields_many_records(tmp_path):
    p = params(reporters=[156, 276, 842], partners=None, cmd_codes=["AG6"], start="2022")
    parts = SOURCE.plan(p, ctx_for("http://x", tmp_path))
    assert [x.params["query"]["reporterCode"] for x in parts] == ["156", "276", "842"]
    assert "partnerCode" not in parts[0].params["query"]  # null = all partners: the item is left out


def test_plan_monthly_partition_and_selection_changes_key(tmp_path):
    p = params(freq="M", reporters=[392], start="202311", end="202402")
    parts = SOURCE.plan(p, ctx_for("http://x", tmp_path))
    assert [x.params["period"] for x in parts] == ["202311", "202312", "202401", "202402"]
    assert parts[0].partition == "M/2023/11" and parts[0].params["path"] == "/data/v1/get/C/M/HS"
    other = SOURCE.plan(params(freq="M", reporters=[392], start="202311", cmd_codes=["27"]), ctx_for("x", tmp_path))
    assert other[0].key != parts[0].key and other[0].cursor != parts[0].cursor


def test_plan_refuses_more_calls_than_the_budget(tmp_path):
    p = params(reporters=list(range(1, 41)), reporters_per_call=1, start="2000", end="2004", max_calls=100)
    with pytest.raises(BadParams, match=r"needs 200 calls .*max_calls is 100") as info:
        SOURCE.plan(p, ctx_for("http://x", tmp_path))
    assert info.value.field == "params.max_calls"


def test_plan_incremental_reads_the_cursor_of_each_batch(tmp_path):
    p = params(reporters=[156, 842])
    cursor = SOURCE.cursor_key(p, (156, 842))
    fresh = SOURCE.plan(p, ctx_for("x", tmp_path))  # now is 2024-05-10: latest annual period is 2023
    assert [x.params["period"] for x in fresh] == ["2022", "2023"] and fresh[0].cursor == cursor
    state = SourceState(cursors={cursor: "2021"})
    later = SOURCE.plan(p, ctx_for("x", tmp_path, state=state))
    assert [x.params["period"] for x in later] == ["2021", "2022", "2023"]
    caught_up = SOURCE.plan(p, ctx_for("x", tmp_path, state=SourceState(cursors={cursor: "2023"})))
    assert [x.params["period"] for x in caught_up] == ["2023"]  # revisions of the newest period only
    wider = SOURCE.plan(params(reporters=[156, 842], revision_periods=3), ctx_for("x", tmp_path, state=state))
    assert [x.params["period"] for x in wider] == ["2019", "2020", "2021", "2022", "2023"]


def test_plan_incremental_monthly(tmp_path):
    p = params(freq="M", reporters=[392])
    cursor = SOURCE.cursor_key(p, (392,))
    parts = SOURCE.plan(p, ctx_for("x", tmp_path, state=SourceState(cursors={cursor: "2024-02"})))
    assert [x.params["period"] for x in parts] == ["202402", "202403", "202404"]
    odd = SOURCE.plan(p, ctx_for("x", tmp_path, state=SourceState(cursors={cursor: "garbage"})))
    assert [x.params["period"] for x in odd] == ["202403", "202404"]  # an unreadable cursor: start afresh


def test_dedup_params_make_incremental_jobs_daily():
    now = datetime(2024, 5, 10, 23, 0, tzinfo=UTC)
    assert SOURCE.dedup_params(params(), now)["as_of"] == "2024-05-10"
    assert "as_of" not in SOURCE.dedup_params(params(start="2022"), now)


def test_split_query_halves_the_first_multi_valued_dimension():
    q = {"reporterCode": "1,2,3", "period": "2022", "flowCode": "M,X"}
    assert split_query(q) == [{**q, "reporterCode": "1"}, {**q, "reporterCode": "2,3"}]
    assert split_query({**q, "reporterCode": "1"}) == [
        {**q, "reporterCode": "1", "flowCode": "M"},
        {**q, "reporterCode": "1", "flowCode": "X"},
    ]
    assert split_query({"reporterCode": "1", "flowCode": "M", "cmdCode": "AG6"}) == []


# ------------------------------------------------------------------------------------------ 5. fetch + parse + write


def test_demo_params_run_through_replay_and_a_second_run_adds_nothing(replay, tmp_path):
    store = LocalStore(tmp_path / "out")
    ctx = ctx_for(base(replay), tmp_path)
    parts = SOURCE.plan(SOURCE.validate_params(SOURCE.demo_params), ctx)
    assert len(parts) == 1
    first = run_part(SOURCE, parts[0], ctx, store)
    assert first.records == 4 and len(first.outputs) == 3
    assert first.watermark == "2022" and first.cursors == {parts[0].cursor: "2022"}
    raw = Path(first.outputs[0].removeprefix("file://"))
    assert raw.name == f"{parts[0].key}.ndjson" and raw.read_bytes().count(b"\n") == 1
    rows = normalized_rows(tmp_path / "out")
    assert len(rows) == 4 and rows[0]["reporterCode"] == 156
    schema = pq.read_schema(Path(first.outputs[1].removeprefix("file://")))
    assert [(f.name, f.type) for f in schema] == [(c.name, arrow_type(c.type)) for c in COLUMNS]
    again = run_part(SOURCE, parts[0], ctx_for(base(replay), tmp_path / "2"), store)
    assert again.outputs == first.outputs
    assert len(normalized_rows(tmp_path / "out")) == 4
    for f in (tmp_path / "out").rglob("*"):
        assert KEY not in str(f) and (f.is_dir() or KEY.encode() not in f.read_bytes())


def test_incremental_runs_overwrite_and_never_duplicate(replay, tmp_path):
    store = LocalStore(tmp_path / "out")
    p = params(reporters=[156, 842])
    cursor = SOURCE.cursor_key(p, (156, 842))
    state = SourceState(cursors={cursor: "2021"})
    parts = SOURCE.plan(p, ctx_for(base(replay), tmp_path, state=state))
    cursors = run_all(parts, ctx_for(base(replay), tmp_path, state=state), store)
    assert cursors == {cursor: "2022"}  # 2023 answered empty: not published yet, the cursor stays
    assert len(normalized_rows(tmp_path / "out")) == 3 + 4
    state = SourceState(cursors=cursors)
    parts2 = SOURCE.plan(p, ctx_for(base(replay), tmp_path, state=state))
    assert [x.params["period"] for x in parts2] == ["2022", "2023"]
    assert {x.key for x in parts2} <= {x.key for x in parts}
    run_all(parts2, ctx_for(base(replay), tmp_path, state=state), store)
    rows = normalized_rows(tmp_path / "out")
    assert len(rows) == 7 and len({tuple(r[k] for k in NATURAL_KEY) for r in rows}) == 7


def test_answer_at_the_record_cap_is_split_and_asked_again(replay, tmp_path):
    # One flow: the plan estimates 1 record per reporter, so both reporters share a call; the recorded
    # answer for that call holds 3 records, the cap (replay routes ignore flowCode, so X rows come back too).
    p = params(reporters=[156, 842], start="2021", flows=["M"], max_records_per_call=3)
    (part,) = SOURCE.plan(p, ctx_for(base(replay), tmp_path))
    assert part.params["query"]["reporterCode"] == "156,842"
    ctx = ctx_for(base(replay), tmp_path)
    raw = SOURCE.fetch(part, ctx)
    assert raw.meta["calls"] == 3 and raw.path.read_bytes().count(b"\n") == 2
    result = run_part(SOURCE, part, ctx, LocalStore(tmp_path / "out"))
    assert result.records == 4  # not the 3 of the capped answer
    assert {(r["reporterCode"], r["flowCode"]) for r in normalized_rows(tmp_path / "out")} == {
        (156, "M"),
        (156, "X"),
        (842, "M"),
        (842, "X"),
    }


def test_answer_at_the_cap_that_cannot_be_split_fails_clearly(replay, tmp_path):
    p = params(reporters=[156], start="2021", max_records_per_call=2)
    (part,) = SOURCE.plan(p, ctx_for(base(replay), tmp_path))
    with pytest.raises(
        PermanentError, match="per-call cap of 2, so the answer may be truncated, and it cannot be split"
    ):
        SOURCE.fetch(part, ctx_for(base(replay), tmp_path))


def test_monthly_part_through_replay(replay, tmp_path):
    (part,) = SOURCE.plan(params(freq="M", reporters=[392], start="202301"), ctx_for(base(replay), tmp_path))
    result = run_part(SOURCE, part, ctx_for(base(replay), tmp_path), LocalStore(tmp_path / "out"))
    assert result.records == 2 and result.watermark == "2023-01"
    assert "/normalized/comtrade/trade/partition=M-2023-01/" in result.outputs[1]


def test_empty_answer_succeeds_with_zero_records_and_no_cursor(replay, tmp_path):
    (part,) = SOURCE.plan(params(reporters=[156, 842], start="2023"), ctx_for(base(replay), tmp_path))
    result = run_part(SOURCE, part, ctx_for(base(replay), tmp_path), LocalStore(tmp_path / "out"))
    assert result.records == 0 and result.watermark is None and result.cursors == {}


def test_error_with_200_is_permanent_and_readable(replay, tmp_path):
    (part,) = SOURCE.plan(params(reporters=[156, 842], start="2017"), ctx_for(base(replay), tmp_path))
    with pytest.raises(PermanentError, match=r"reporterCode=156,842 period=2017.*answered an error: Invalid parameter"):
        SOURCE.fetch(part, ctx_for(base(replay), tmp_path))


@pytest.mark.parametrize(("period", "status"), [("2018", 429), ("2019", 503)])
def test_throttling_and_outages_are_transient(replay, tmp_path, period, status):
    (part,) = SOURCE.plan(params(reporters=[156], start=period), ctx_for(base(replay), tmp_path))
    with pytest.raises(TransientError, match=str(status)) as info:
        SOURCE.fetch(part, ctx_for(base(replay), tmp_path))
    assert KEY not in info.value.message


def test_key_travels_in_the_header_only(tmp_path):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=(SAMPLES / "data_C_A_HS_2022_r156_842.json").read_bytes())

    http = Http(transport=httpx.MockTransport(handler), max_tries=1)
    ctx = ctx_for("https://comtradeapi.un.org", tmp_path, http=http)
    (part,) = SOURCE.plan(SOURCE.validate_params(SOURCE.demo_params), ctx)
    raw = SOURCE.fetch(part, ctx)
    assert seen[0].headers[KEY_HEADER] == KEY and KEY not in str(seen[0].url)
    assert seen[0].url.path == "/data/v1/get/C/A/HS" and seen[0].url.params["period"] == "2022"
    assert len(list(iter_records(SOURCE.parse(raw.open(), part)))) == 4


# ------------------------------------------------------------------------------------------ 6. the key


def test_missing_key_fails_fast_naming_it(monkeypatch, tmp_path):
    monkeypatch.delenv(f"TRIBUTARY_SECRET_{SECRET}", raising=False)
    monkeypatch.setenv("TRIBUTARY_NO_SECRET_MANAGER", "1")
    monkeypatch.setenv("TRIBUTARY_SECRETS_FILE", str(tmp_path / "none.json"))
    with pytest.raises(ConfigError, match=SECRET):
        load_secrets(SOURCE)
    monkeypatch.setenv(f"TRIBUTARY_SECRET_{SECRET}", "abc")
    assert load_secrets(SOURCE) == {SECRET: "abc"}


def test_fetch_without_key_is_a_config_error(replay, tmp_path):
    (part,) = SOURCE.plan(params(reporters=[156, 842], start="2022"), ctx_for(base(replay), tmp_path))
    with pytest.raises(ConfigError, match=SECRET):
        SOURCE.fetch(part, ctx_for(base(replay), tmp_path, secrets={}))


def test_401_is_permanent_and_names_the_key_without_its_value(replay, tmp_path):
    (part,) = SOURCE.plan(params(reporters=[156], start="2015"), ctx_for(base(replay), tmp_path))
    with pytest.raises(PermanentError) as info:
        SOURCE.fetch(part, ctx_for(base(replay), tmp_path))
    msg = info.value.message
    assert "401" in msg and "invalid subscription key" in msg and SECRET in msg and KEY not in msg


def test_403_quota_is_transient_until_it_refills(replay, tmp_path):
    (part,) = SOURCE.plan(params(reporters=[156], start="2016"), ctx_for(base(replay), tmp_path))
    with pytest.raises(TransientError, match="daily call quota") as info:
        SOURCE.fetch(part, ctx_for(base(replay), tmp_path))
    assert info.value.retry_after == 5 * 3600 + 12 * 60 + 34 and KEY not in info.value.message


def test_403_other_than_quota_is_permanent():
    body = '{"statusCode": 403, "message": "The subscription key is not authorized for this API."}'
    with pytest.raises(PermanentError, match=f"403.*not authorized.*{SECRET}"):
        check_answer(body.encode())


# ------------------------------------------------------------------------------------------ contract


def test_declarations(tmp_path):
    assert croniter.is_valid(SOURCE.schedule.cron)
    assert SOURCE.secrets == (SECRET,) and SOURCE.http_rate
    assert all(c.type in TYPES for c in COLUMNS) and len(set(NAMES)) == len(NAMES)
    assert 15 <= SOURCE.queue.dispatch_deadline <= 1800 and SOURCE.queue.max_concurrent_dispatches == 1
    routes = json.loads((SAMPLES / "_routes.json").read_text())
    for route in routes:
        assert (SAMPLES / route["file"]).is_file()
    (part,) = SOURCE.plan(SOURCE.validate_params(SOURCE.demo_params), ctx_for("x", tmp_path))
    assert any(
        part.params["path"] == r["path"] and all(part.params["query"].get(k) == v for k, v in r["query"].items())
        for r in routes
    ), "the demo's request has a recorded answer"
    assert orjson.loads((SAMPLES / "data_C_A_HS_2022_r156_842.json").read_bytes())["count"] == 4


# ------------------------------------------------------------------------------------------ live (opt-in)


@pytest.mark.live
def test_live_one_small_annual_query(tmp_path):
    key = os.environ.get(f"TRIBUTARY_SECRET_{SECRET}")
    if not key:
        pytest.skip(f"set TRIBUTARY_SECRET_{SECRET} to run the live test")
    p = params(reporters=[842], start="2022")
    with Http(rate=SOURCE.http_rate, name="comtrade-live") as http:
        ctx = ctx_for(SOURCE.default_base_url, tmp_path, secrets={SECRET: key}, http=http)
        (part,) = SOURCE.plan(p, ctx)
        raw = SOURCE.fetch(part, ctx)
        rows = list(SOURCE.parse(raw.open(), part))
    assert rows and {r["reporterCode"] for r in rows} == {842} and {r["flowCode"] for r in rows} <= {"M", "X"}
