"""UN Comtrade: final trade data from the v1 data API, one part per period and reporter batch."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import IO, TYPE_CHECKING, Any, Literal

import orjson
from pydantic import Field, ValidationInfo, field_validator

from common.core.errors import (
    BadParams,
    ConfigError,
    IngestError,
    PermanentError,
    TransientError,
    UpstreamHTTPError,
    UpstreamPermanent,
    UpstreamTransient,
    upstream_message,
)
from common.sources.base import (
    Column,
    Context,
    Params,
    Part,
    QueueConfig,
    Raw,
    Record,
    Schedule,
    Source,
    default_classify,
    redact,
)

if TYPE_CHECKING:  # pragma: no cover
    import httpx

SECRET = "COMTRADE_SUBSCRIPTION_KEY"
KEY_HEADER = "Ocp-Apim-Subscription-Key"
#: Calls a free ("comtrade - v1") key may make per day (see docs/sources/comtrade.md for where this comes from).
DAILY_CALL_QUOTA = 500
#: The most records one data call returns on the free tier; a response this full may be truncated.
RECORD_CAP = 100_000
#: Upper bound for ``max_records_per_call`` (the largest per-call limit UN Comtrade's own client mentions).
MAX_RECORD_CAP = 250_000
#: Calls one part may make while splitting a too-large answer, before it gives up with an error.
MAX_CALLS_PER_PART = 32
STREAM = "trade"

#: Goods (C) and services (S) classifications the data API accepts (clCode).
CLASSIFICATIONS = {
    "C": ("HS", "H0", "H1", "H2", "H3", "H4", "H5", "H6", "S1", "S2", "S3", "S4", "SS", "B4", "B5"),
    "S": ("EB", "EB02", "EB10", "EB10S"),
}
#: Trade flow codes (flowCode) of the Comtrade reference list.
FLOWS = ("M", "X", "RM", "RX", "MIP", "MOP", "XIP", "XOP", "DX", "FM")
#: Default reporters (Comtrade's own codes, not always M49: USA is 842, France 251, India 699).
DEFAULT_REPORTERS = (76, 156, 251, 276, 392, 699, 826, 842)
#: Rough fan-out of an unrestricted ("all") dimension, to size reporter batches before the first call.
ALL_ESTIMATE = {"partnerCode": 250, "flowCode": 10, "partner2Code": 250, "motCode": 18, "customsCode": 20}
AGGREGATE_CMD_ESTIMATE = {"AG1": 25, "AG2": 100, "AG4": 1_300, "AG6": 5_700, "ALL": 7_000}

CMD_RE = re.compile(r"^[A-Z0-9]{1,12}$")
CUSTOMS_RE = re.compile(r"^C\d{2}$")
ANNUAL_RE = re.compile(r"^(\d{4})$")
MONTHLY_RE = re.compile(r"^(\d{4})-?(0[1-9]|1[0-2])$")
REPLENISH_RE = re.compile(r"replenished in (?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})")

_S, _I, _F, _B = "STRING", "INT64", "FLOAT64", "BOOL"


def _col(spec: str, description: str = "") -> Column:
    name, type_, *mode = spec.split(":")
    return Column(name, type_, mode[0] if mode else "NULLABLE", description)


#: The data API's record, field for field (names exactly as the API returns them, e.g. ``cifvalue``).
COLUMNS: tuple[Column, ...] = (
    _col(f"typeCode:{_S}:REQUIRED", "C goods, S services"),
    _col(f"freqCode:{_S}:REQUIRED", "A annual, M monthly"),
    _col(f"refPeriodId:{_I}", "first day of the period, YYYYMMDD"),
    _col(f"refYear:{_I}"),
    _col(f"refMonth:{_I}", "1-12; 52 for annual data"),
    _col(f"period:{_S}:REQUIRED", "YYYY (annual) or YYYYMM (monthly)"),
    _col(f"reporterCode:{_I}:REQUIRED", "Comtrade reporter code"),
    _col(f"reporterISO:{_S}"),
    _col(f"reporterDesc:{_S}"),
    _col(f"flowCode:{_S}:REQUIRED", "M import, X export, RM, RX, ..."),
    _col(f"flowDesc:{_S}"),
    _col(f"partnerCode:{_I}:REQUIRED", "0 is World"),
    _col(f"partnerISO:{_S}"),
    _col(f"partnerDesc:{_S}"),
    _col(f"partner2Code:{_I}"),
    _col(f"partner2ISO:{_S}"),
    _col(f"partner2Desc:{_S}"),
    _col(f"classificationCode:{_S}", "the reported classification, e.g. H3"),
    _col(f"classificationSearchCode:{_S}", "the requested classification, e.g. HS"),
    _col(f"isOriginalClassification:{_B}"),
    _col(f"cmdCode:{_S}:REQUIRED", "commodity code; a string (leading zeros matter)"),
    _col(f"cmdDesc:{_S}"),
    _col(f"aggrLevel:{_I}"),
    _col(f"isLeaf:{_B}"),
    _col(f"customsCode:{_S}"),
    _col(f"customsDesc:{_S}"),
    _col(f"mosCode:{_S}", "mode of supply (services)"),
    _col(f"motCode:{_I}", "mode of transport; 0 is all"),
    _col(f"motDesc:{_S}"),
    _col(f"qtyUnitCode:{_I}", "-1 is N/A (an upstream code, kept as is)"),
    _col(f"qtyUnitAbbr:{_S}"),
    _col(f"qty:{_F}"),
    _col(f"isQtyEstimated:{_B}"),
    _col(f"altQtyUnitCode:{_I}"),
    _col(f"altQtyUnitAbbr:{_S}"),
    _col(f"altQty:{_F}"),
    _col(f"isAltQtyEstimated:{_B}"),
    _col(f"netWgt:{_F}", "kg"),
    _col(f"isNetWgtEstimated:{_B}"),
    _col(f"grossWgt:{_F}", "kg"),
    _col(f"isGrossWgtEstimated:{_B}"),
    _col(f"cifvalue:{_F}", "US$"),
    _col(f"fobvalue:{_F}", "US$"),
    _col(f"primaryValue:{_F}", "US$, from CIF (imports) or FOB (exports)"),
    _col(f"legacyEstimationFlag:{_I}"),
    _col(f"isReported:{_B}"),
    _col(f"isAggregate:{_B}"),
)
#: Other spellings of a column seen in Comtrade's own reference (TradeDataItems.json) but not in data answers.
ALIASES = {
    "cifvalue": ("cifValue",),
    "fobvalue": ("fobValue",),
    "isNetWgtEstimated": ("isnetWgtEstimated",),
    "isGrossWgtEstimated": ("isgrossWgtEstimated",),
}


def _codes(v: Any) -> Any:
    """Accept "156,842" as well as [156, 842]."""
    return [x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v


class ComtradeParams(Params):
    """What to ingest. Without ``start``, the job is incremental: the periods after each batch's cursor."""

    type_code: Literal["C", "S"] = Field("C", description="C goods, S services")
    freq: Literal["A", "M"] = Field("A", description="A annual, M monthly")
    classification: str = Field(
        "HS", validate_default=True, description="clCode: HS, H0-H6, S1-S4, SS, B4, B5 (goods); EB... (services)"
    )
    reporters: tuple[int, ...] = Field(DEFAULT_REPORTERS, min_length=1, description="reporter codes")
    partners: tuple[int, ...] | None = Field((0,), description="partner codes (0 World); null for all partners")
    partner2: tuple[int, ...] | None = Field((0,), description="second partner codes; null for all")
    cmd_codes: tuple[str, ...] = Field(("TOTAL",), min_length=1, description="commodity codes, TOTAL, AG2...")
    flows: tuple[str, ...] | None = Field(("M", "X"), description=f"flow codes ({', '.join(FLOWS)}); null for all")
    mot_codes: tuple[int, ...] | None = Field((0,), description="mode of transport codes (0 all modes); null for all")
    customs_codes: tuple[str, ...] | None = Field(("C00",), description="customs procedure codes; null for all")
    start: str | None = Field(None, description="first period: YYYY (annual) or YYYYMM (monthly); default: incremental")
    end: str | None = Field(None, description="last period (inclusive); default: start")
    reporters_per_call: int = Field(10, ge=1, le=50, description="most reporters in one call")
    max_records_per_call: int = Field(
        RECORD_CAP, ge=1, le=MAX_RECORD_CAP, description="the key's per-call record cap (maxRecords)"
    )
    max_calls: int = Field(100, ge=1, le=DAILY_CALL_QUOTA, description="most parts (calls) one job may plan")
    revision_periods: int = Field(1, ge=1, le=24, description="incremental: ingested periods fetched again")
    initial_periods: int = Field(2, ge=1, le=60, description="incremental: periods fetched when there is no cursor")

    @field_validator("classification")
    @classmethod
    def _classification(cls, v: str, info: ValidationInfo) -> str:
        allowed = CLASSIFICATIONS[info.data.get("type_code", "C")]
        if v not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)} for type_code {info.data.get('type_code', 'C')}")
        return v

    @field_validator("freq")
    @classmethod
    def _freq(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("type_code") == "S" and v != "A":
            raise ValueError("services (type_code S) are published annually only: use A")
        return v

    @field_validator("reporters", "partners", "partner2", "mot_codes", mode="before")
    @classmethod
    def _split_ints(cls, v: Any) -> Any:
        return _codes(v)

    @field_validator("cmd_codes", "flows", "customs_codes", mode="before")
    @classmethod
    def _split_strs(cls, v: Any) -> Any:
        v = _codes(v)
        return [x.upper() if isinstance(x, str) else x for x in v] if isinstance(v, list | tuple) else v

    @field_validator("reporters")
    @classmethod
    def _reporters(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        bad = [c for c in v if not 1 <= c <= 999]
        if bad:
            raise ValueError(f"reporter codes are 1-999 (0 is World, a partner only); got {bad}")
        return tuple(sorted(set(v)))

    @field_validator("partners", "partner2", "mot_codes")
    @classmethod
    def _other_codes(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is None:
            return None
        if not v:
            raise ValueError("give at least one code, or null for all")
        bad = [c for c in v if not 0 <= c <= 9999]
        if bad:
            raise ValueError(f"codes are 0-9999; got {bad}")
        return tuple(sorted(set(v)))

    @field_validator("cmd_codes")
    @classmethod
    def _cmds(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [c for c in v if not CMD_RE.match(c)]
        if bad:
            raise ValueError(f"commodity codes are letters and digits (TOTAL, AG2, 0201, ...); got {bad}")
        return tuple(sorted(set(v)))

    @field_validator("flows")
    @classmethod
    def _flows(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return None
        bad = [c for c in v if c not in FLOWS]
        if bad or not v:
            # The API answers unknown codes with an empty result, not an error: refuse them here.
            raise ValueError(f"flow codes are {', '.join(FLOWS)}; got {bad or 'none'}")
        return tuple(sorted(set(v)))

    @field_validator("customs_codes")
    @classmethod
    def _customs(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return None
        bad = [c for c in v if not CUSTOMS_RE.match(c)]
        if bad or not v:
            raise ValueError(f"customs codes look like C00; got {bad or 'none'}")
        return tuple(sorted(set(v)))

    @field_validator("start", "end", mode="before")
    @classmethod
    def _period(cls, v: Any, info: ValidationInfo) -> Any:
        if v is None:
            return None
        text = str(v).strip()
        freq = info.data.get("freq", "A")
        # A wrongly formatted period is answered with an empty result, not an error: refuse it here.
        m = (ANNUAL_RE if freq == "A" else MONTHLY_RE).match(text)
        if not m or not 1962 <= int(m.group(1)) <= 2100:
            shape = "YYYY" if freq == "A" else "YYYYMM"
            raise ValueError(f"must be a period {shape} (freq {freq}) from 1962 on; got {text!r}")
        return "".join(m.groups())

    @field_validator("end")
    @classmethod
    def _end(cls, v: str | None, info: ValidationInfo) -> str | None:
        start = info.data.get("start")
        if v is not None and start is None:
            raise ValueError("end needs a start")
        if v is not None and start is not None and v < start:
            raise ValueError(f"end {v} is before start {start}")
        return v


# ------------------------------------------------------------------------------------------ periods


def period_index(period: str) -> int:
    """Periods as consecutive integers: a year, or year*12 + month - 1."""
    return int(period) if len(period) == 4 else int(period[:4]) * 12 + int(period[4:]) - 1


def period_of(index: int, freq: str) -> str:
    return str(index) if freq == "A" else f"{index // 12:04d}{index % 12 + 1:02d}"


def display_period(period: str) -> str:
    """The cursor form of a period: ``2023`` or ``2023-01`` (so annual and monthly compare sensibly)."""
    return period if len(period) == 4 else f"{period[:4]}-{period[4:]}"


def api_period(cursor: str) -> str:
    return cursor.replace("-", "")


def latest_period(freq: str, now: datetime) -> str:
    """The newest period that can have data: last year (annual) or last month (monthly)."""
    now = now.astimezone(UTC)
    if freq == "A":
        return str(now.year - 1)
    return period_of(now.year * 12 + now.month - 2, "M")


def periods_to_fetch(params: ComtradeParams, cursor: str | None, now: datetime) -> list[str]:
    """The job's periods: ``start..end``, or (incremental) the last ``revision_periods`` before the
    cursor and everything after it, up to the latest period; without a cursor, the last ``initial_periods``."""
    if params.start is not None:
        first, last = period_index(params.start), period_index(params.end or params.start)
    else:
        last = period_index(latest_period(params.freq, now))
        if cursor is None or not (ANNUAL_RE if params.freq == "A" else MONTHLY_RE).match(cursor):
            first = last - params.initial_periods + 1  # no (readable) cursor: start afresh
        else:
            first = min(period_index(api_period(cursor)) + 1 - params.revision_periods, last)
    return [period_of(i, params.freq) for i in range(first, last + 1)]


# ------------------------------------------------------------------------------------------ queries


def _join(values: tuple[Any, ...] | None) -> str | None:
    return None if values is None else ",".join(str(v) for v in values)


def selection(params: ComtradeParams) -> dict[str, str]:
    """The query items every part of the job shares (all but reporterCode and period)."""
    items = {
        "partnerCode": _join(params.partners),
        "partner2Code": _join(params.partner2),
        "cmdCode": _join(params.cmd_codes),
        "flowCode": _join(params.flows),
        "motCode": _join(params.mot_codes),
        "customsCode": _join(params.customs_codes),
    }
    return {k: v for k, v in items.items() if v is not None}


def _digest(*values: Any) -> str:
    return hashlib.sha1(orjson.dumps(values, option=orjson.OPT_SORT_KEYS), usedforsecurity=False).hexdigest()[:10]


def reporters_label(batch: tuple[int, ...]) -> str:
    if len(batch) <= 8:
        return "r" + "_".join(str(c) for c in batch)
    return f"r{batch[0]}-{batch[-1]}n{len(batch)}h{_digest(batch)[:6]}"


def estimate_per_reporter(params: ComtradeParams) -> int:
    """An upper estimate of the records one reporter yields for one period."""
    total = sum(AGGREGATE_CMD_ESTIMATE.get(c, 1) for c in params.cmd_codes)
    for name, values in (
        ("partnerCode", params.partners),
        ("flowCode", params.flows),
        ("partner2Code", params.partner2),
        ("motCode", params.mot_codes),
        ("customsCode", params.customs_codes),
    ):
        total *= ALL_ESTIMATE[name] if values is None else len(values)
    return total


def reporter_batches(params: ComtradeParams) -> list[tuple[int, ...]]:
    """Reporters in fixed-size batches, small enough that a call should stay under the record cap."""
    size = max(1, min(params.reporters_per_call, params.max_records_per_call // estimate_per_reporter(params)))
    r = params.reporters
    return [r[i : i + size] for i in range(0, len(r), size)]


def split_query(query: dict[str, str]) -> list[dict[str, str]]:
    """Two halves of a query along its first multi-valued dimension; [] when it cannot be split."""
    for name in ("reporterCode", "flowCode", "partnerCode", "cmdCode", "partner2Code", "motCode", "customsCode"):
        values = query.get(name, "").split(",")
        if len(values) > 1:
            mid = len(values) // 2
            return [{**query, name: ",".join(half)} for half in (values[:mid], values[mid:])]
    return []


# ------------------------------------------------------------------------------------------ the source


class Comtrade(Source):
    name = "comtrade"
    description = "UN Comtrade final trade data (goods and services), annual and monthly, by reporter and partner"
    # Comtrade publishes as countries report (continuously); a daily look at the newest periods is plenty.
    schedule = Schedule(cron="30 6 * * *", time_zone="UTC")
    # One call at a time, spaced out: the free key allows ~500 calls a day and answers bursts with 429.
    queue = QueueConfig(
        max_dispatches_per_second=0.1,
        max_concurrent_dispatches=1,
        max_attempts=5,
        min_backoff=60,
        max_backoff=3600,
        max_doublings=4,
        dispatch_deadline=1800,
    )
    secrets = (SECRET,)
    params_model = ComtradeParams
    default_base_url = "https://comtradeapi.un.org"
    schemas = {STREAM: COLUMNS}
    memory = "1Gi"
    #: comtradr (rOpenSci) paces at 10 calls a minute by default; Retry-After on 429 is honoured on top.
    http_rate = "10/minute"
    demo_params = {"freq": "A", "reporters": [156, 842], "start": "2022"}

    def dedup_params(self, params: Params, now: datetime) -> dict[str, Any]:
        out = super().dedup_params(params, now)
        if out.get("start") is None:  # incremental: one job per day
            out["as_of"] = now.astimezone(UTC).strftime("%Y-%m-%d")
        return out

    def cursor_key(self, params: ComtradeParams, batch: tuple[int, ...]) -> str:
        """The incremental position of one reporter batch: per type, frequency, classification and selection."""
        prefix = f"{params.type_code}{params.freq}-{params.classification}"
        return f"{prefix}-{reporters_label(batch)}-{_digest(selection(params))}"

    def plan(self, params: Params, ctx: Context) -> list[Part]:
        assert isinstance(params, ComtradeParams)
        shared = selection(params)
        digest = _digest(params.type_code, params.freq, params.classification, shared)
        path = f"/data/v1/get/{params.type_code}/{params.freq}/{params.classification}"
        work: list[tuple[str, tuple[int, ...], str]] = []
        for batch in reporter_batches(params):
            cursor = self.cursor_key(params, batch)
            for period in periods_to_fetch(params, ctx.state.cursors.get(cursor), ctx.now):
                work.append((period, batch, cursor))
        if len(work) > params.max_calls:
            periods = len({w[0] for w in work})
            raise BadParams(
                f"params.max_calls: this job needs {len(work)} calls ({periods} periods x "
                f"{len(work) // max(periods, 1)} reporter batches) but max_calls is {params.max_calls} "
                f"(a free key has about {DAILY_CALL_QUOTA} calls a day): narrow start/end or reporters, "
                "or raise max_calls",
                field="params.max_calls",
            )
        work.sort(key=lambda w: (w[0], w[1]))
        parts = []
        for index, (period, batch, cursor) in enumerate(work):
            query = {
                "reporterCode": _join(batch) or "",
                "period": period,
                **shared,
                "includeDesc": "TRUE",
                "maxRecords": str(params.max_records_per_call),
            }
            year, month = period[:4], period[4:]
            parts.append(
                Part(
                    key=f"{params.type_code}{params.freq}-{params.classification}-{period}-{reporters_label(batch)}-{digest}",
                    index=index,
                    total=len(work),
                    stream=STREAM,
                    partition=f"{params.freq}/{year}" + (f"/{month}" if month else ""),
                    cursor=cursor,
                    params={"path": path, "query": query, "period": period, "cap": params.max_records_per_call},
                )
            )
        return parts

    def fetch(self, part: Part, ctx: Context) -> Raw:
        """Every answer of the part as one NDJSON line; an answer at the record cap is split and asked again.

        Raises:
            ConfigError: the subscription key is not set.
            PermanentError: the key is refused, the API answered an error, or a query that cannot be split
                further still reaches the record cap.
            TransientError: 429/5xx/timeouts, or the daily quota is used up (retry after it refills).
        """
        key = ctx.secrets.get(SECRET)
        if not key:
            raise ConfigError(f"secret {SECRET} is not set (needed by source {self.name})")
        url = f"{ctx.base_url}{part.params['path']}"
        cap = int(part.params["cap"])
        dest = ctx.workdir / f"{part.key}.ndjson"
        pending = [dict(part.params["query"])]
        calls = 0
        with dest.open("wb") as out:
            while pending:
                query = pending.pop(0)
                calls += 1
                if calls > MAX_CALLS_PER_PART:
                    raise PermanentError(
                        f"{part.key}: still over the {cap:,}-record cap after {MAX_CALLS_PER_PART} calls; "
                        "ask for fewer reporters, partners or commodities per job"
                    )
                body = self._get(ctx, url, query, key)
                doc = check_answer(body, label=f"{part.key} ({describe(query)})")
                data = doc["data"]
                count = doc.get("count")
                if len(data) >= cap or (isinstance(count, int) and count > len(data)):
                    halves = split_query(query)
                    if not halves:
                        raise PermanentError(
                            f"{part.key}: the query {describe(query)} returned {len(data):,} records, the "
                            f"per-call cap of {cap:,}, so the answer may be truncated, and it cannot be split "
                            "further: ask for fewer partners or commodities (e.g. AG4 instead of AG6)"
                        )
                    pending[:0] = halves
                    continue
                # JSON whitespace outside strings is insignificant and newlines inside strings are escaped,
                # so this keeps each raw answer intact on one line.
                out.write(body.replace(b"\r", b" ").replace(b"\n", b" ").strip() + b"\n")
        return Raw(
            path=dest,
            size=dest.stat().st_size,
            name=f"{part.key}.ndjson",
            content_type="application/x-ndjson",
            meta={"calls": calls},
        )

    def _get(self, ctx: Context, url: str, query: dict[str, str], key: str) -> bytes:
        classify = partial(classify_response, key=key)
        return ctx.http.get(url, params=query, headers={KEY_HEADER: key}, classify=classify, secrets=(key,)).content

    def parse(self, stream: IO[bytes], part: Part) -> Iterator[Record]:
        return parse_answers(stream, label=part.key)

    def watermark(self, part: Part, records: int) -> str | None:
        """The part's period once it held data (an empty answer means "not published yet": no advance)."""
        return display_period(str(part.params["period"])) if records > 0 else None


# ------------------------------------------------------------------------------------------ errors


def describe(query: Mapping[str, str]) -> str:
    return " ".join(
        f"{k}={query[k]}" for k in ("reporterCode", "period", "flowCode", "partnerCode", "cmdCode") if k in query
    )


def _apim_message(detail: str) -> str:
    """The ``message`` of an Azure API Management error body, else the text itself."""
    try:
        body = orjson.loads(detail)
    except orjson.JSONDecodeError:
        return detail.strip()
    return str(body.get("message") or detail).strip() if isinstance(body, dict) else detail.strip()


def quota_wait(message: str) -> float | None:
    """Seconds until the quota refills, from "Quota will be replenished in [D.]HH:MM:SS"."""
    m = REPLENISH_RE.search(message)
    if not m:
        return None
    days, hours, minutes, seconds = (int(x or 0) for x in m.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def classify_response(response: httpx.Response, key: str) -> IngestError | None:
    """The response hook: a permanent-looking answer of the API gateway as :func:`gateway_error` says
    (a used-up quota is transient); 429/5xx and 2xx as their status says. The key is redacted."""
    error = default_classify(response, (key,))
    if error is None or isinstance(error, TransientError):
        return error
    return gateway_error(error.status, error.excerpt, url=error.url, key=key, retry_after=error.retry_after)


def gateway_error(
    status: int,
    excerpt: str,
    *,
    url: str = "comtradeapi",
    key: str | None = None,
    label: str = "",
    retry_after: float | None = None,
) -> UpstreamHTTPError:
    """A readable error for a failed answer of the API gateway (the key's value never appears).

    401 (missing or invalid key) and 403 (key not allowed) are permanent and name the secret; a 403 for
    a used-up call quota is transient, retried after the quota refills.
    """
    where = f"{label}: " if label else ""
    secrets = (key,) if key else ()
    excerpt = redact(excerpt, secrets)
    detail = _apim_message(excerpt)
    if status == 403 and "quota" in detail.lower():
        return UpstreamTransient(
            status,
            url,
            excerpt=excerpt,
            retry_after=quota_wait(detail),
            message=f"{where}UN Comtrade: the daily call quota of the subscription key is used up ({detail})",
        )
    if status in (401, 403):
        message = (
            f"{where}UN Comtrade refused the subscription key ({status}: {detail or 'no detail'}); "
            f"check secret {SECRET} (env TRIBUTARY_SECRET_{SECRET}) holds a valid key of the comtrade - v1 product"
        )
    else:
        message = f"{where}UN Comtrade answered {status}: {upstream_message(status, url, excerpt)}"
    return UpstreamPermanent(status, url, excerpt=excerpt, retry_after=retry_after, message=message)


def check_answer(body: bytes, *, label: str = "answer") -> dict[str, Any]:
    """The decoded answer of ``data/v1/get``, verified: ``{"elapsedTime", "count", "data": [...], "error"}``.

    Raises:
        PermanentError: not JSON; an error body (API gateway or ``error`` with 200); a legacy-API or
            bulk-listing payload; or a ``count`` that disagrees with ``data``.
        TransientError: an ``error`` string that says the API timed out or was busy.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PermanentError(f"{label}: not JSON ({exc}): {body[:120]!r}") from exc
    if not isinstance(doc, dict):
        raise PermanentError(f"{label}: expected a JSON object, got {type(doc).__name__}")
    if "statusCode" in doc and "message" in doc:
        status, text = doc["statusCode"], orjson.dumps(doc).decode()
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        if isinstance(status, int) and not isinstance(status, bool):
            raise gateway_error(status, text, label=label)
        raise PermanentError(f"{label}: upstream answered {status} from comtradeapi: {text}")
    if "dataset" in doc or "validation" in doc:
        raise PermanentError(
            f"{label}: this is a legacy Comtrade API payload ({{validation, dataset}}, comtrade.un.org/api/get), "
            "retired in 2023; this source reads the v1 data API (comtradeapi.un.org/data/v1/get) only"
        )
    if "data" not in doc:
        raise PermanentError(
            f"{label}: not a UN Comtrade data answer (expected elapsedTime, count, data, error; "
            f"found {', '.join(sorted(doc)) or 'no keys'})"
        )
    error = doc.get("error")
    if error:
        text = str(error)
        if any(w in text.lower() for w in ("timeout", "timed out", "try again", "busy")):
            raise TransientError(f"{label}: UN Comtrade answered an error: {text}")
        raise PermanentError(f"{label}: UN Comtrade answered an error: {text}")
    data = doc["data"]
    if data is None:
        data = doc["data"] = []
    if not isinstance(data, list):
        raise PermanentError(f"{label}: data is a {type(data).__name__}, expected a list of records")
    count = doc.get("count")
    if isinstance(count, int) and count < len(data):
        raise PermanentError(f"{label}: count says {count} records but data holds {len(data)}")
    if data and isinstance(data[0], dict) and "fileUrl" in data[0]:
        raise PermanentError(f"{label}: this is a bulk-file listing (bulk/v1/get), not trade data (data/v1/get)")
    return doc


# ------------------------------------------------------------------------------------------ parsing


def _value(raw: Any, type_: str, name: str, where: str) -> Any:
    """One value as its column type; None and "" are missing (never 0)."""
    if raw is None or raw == "":
        return None
    try:
        if type_ == _S:
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise TypeError
            return raw if isinstance(raw, str) else str(raw)
        if type_ == _I:
            if isinstance(raw, bool):
                raise TypeError
            if isinstance(raw, float):
                if not raw.is_integer():
                    raise ValueError
                return int(raw)
            return int(raw)
        if type_ == _F:
            if isinstance(raw, bool):
                raise TypeError
            return float(raw)
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        raise TypeError
    except (TypeError, ValueError):
        raise PermanentError(f"{where}: {name} is {raw!r}, not a valid {type_}") from None


def to_record(item: Any, where: str) -> Record:
    """One API record as a row of :data:`COLUMNS`. Unknown fields are ignored (the API adds fields at times).

    Raises:
        PermanentError: a required field is missing or a value has the wrong type.
    """
    if not isinstance(item, dict):
        raise PermanentError(f"{where}: expected an object, got {type(item).__name__}")
    row = {}
    for col in COLUMNS:
        raw = item.get(col.name)
        if raw is None:
            raw = next((item[a] for a in ALIASES.get(col.name, ()) if item.get(a) is not None), None)
        value = _value(raw, col.type, col.name, where)
        if value is None and col.mode == "REQUIRED":
            raise PermanentError(f"{where}: {col.name} is missing")
        row[col.name] = value
    return row


def parse_answers(stream: IO[bytes], *, label: str = "answer") -> Iterator[Record]:
    """Records from the raw file of a part: NDJSON of ``data/v1/get`` answers (what ``fetch`` writes, read
    one line at a time), or a single answer as the API sends it (compact or pretty-printed).

    Raises:
        PermanentError: an empty file; any answer fails :func:`check_answer`, says more records exist
            than it holds (truncated), or has a record that fails :func:`to_record`.
    """
    first = stream.readline()
    while first and not first.strip():
        first = stream.readline()
    if not first:
        raise PermanentError(f"{label}: empty file, expected UN Comtrade data answers")
    try:
        orjson.loads(first)
        answers: Iterator[bytes] = _lines(first, stream)
        multi = True
    except orjson.JSONDecodeError:
        answers = iter([first + stream.read()])  # one pretty-printed answer
        multi = False
    for n, body in enumerate(answers, 1):
        where = f"{label} line {n}" if multi else label
        doc = check_answer(body, label=where)
        count, data = doc.get("count"), doc["data"]
        if isinstance(count, int) and count > len(data):
            raise PermanentError(f"{where}: count says {count} records but data holds {len(data)} (truncated)")
        for i, item in enumerate(data, 1):
            yield to_record(item, f"{where} record {i}")


def _lines(first: bytes, stream: IO[bytes]) -> Iterator[bytes]:
    yield first
    for line in stream:
        if line.strip():
            yield line
