"""World Bank Indicators API v2: indicator series per country batch, re-fetched when ``lastupdated`` moves."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import IO, TYPE_CHECKING, Any

import orjson
from pydantic import Field, ValidationInfo, field_validator

from common.core.errors import IngestError, PermanentError, TransientError
from common.sources.base import (
    Column,
    Context,
    PageNumberPaginator,
    Params,
    Part,
    QueueConfig,
    Raw,
    Record,
    Schedule,
    Source,
    response_error,
)

if TYPE_CHECKING:  # pragma: no cover
    import httpx

log = logging.getLogger("tributary.sources.worldbank")

DEFAULT_INDICATORS = ("NY.GDP.MKTP.CD", "SP.POP.TOTL")
#: Rows per call. 20,000 holds a whole indicator for every country and year (about 17,000 rows) in one
#: page; 32,500 is the largest value reported to work.
DEFAULT_PER_PAGE = 20_000
MAX_PER_PAGE = 32_500
DEFAULT_MAX_PAGES = 50
#: Countries per call: the codes go in the URL path (``BRA;IND;NGA``), so keep it short.
DEFAULT_BATCH = 50
MAX_BATCH = 60
INDICATOR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._]{0,79}$")
COUNTRY_RE = re.compile(r"^[A-Za-z0-9]{2,3}$")
#: In-band error ids worth retrying ("105: Service currently unavailable"); any other id is permanent.
TRANSIENT_ERROR_IDS = {"105"}

COLUMNS = (
    Column("indicator_id", "STRING", "REQUIRED"),
    Column("indicator_name", "STRING"),
    Column("country_id", "STRING", "REQUIRED", "the API's country id (ISO2 or an aggregate code)"),
    Column("country_name", "STRING"),
    Column("countryiso3code", "STRING", description="ISO3; null when the API gives none"),
    Column("date", "STRING", "REQUIRED", "period as published: 2020, 2020Q1 or 2020M01"),
    Column("year", "INT64", description="the period's year"),
    Column("value", "FLOAT64", description="null when the API has no value"),
    Column("unit", "STRING"),
    Column("obs_status", "STRING"),
    Column("decimal", "INT64", description="decimals the publisher shows"),
    Column("lastupdated", "DATE", description="the source database's last update (page metadata)"),
    Column("source_id", "STRING", description="World Bank database id (2 = WDI)"),
)


class WorldBankParams(Params):
    """Indicators for countries; one part per (indicator, batch of countries)."""

    indicators: tuple[str, ...] = Field(DEFAULT_INDICATORS, min_length=1, description="indicator ids")
    countries: tuple[str, ...] = Field(("all",), min_length=1, description='ISO2/ISO3 or aggregate codes, or "all"')
    batch_size: int = Field(DEFAULT_BATCH, ge=1, le=MAX_BATCH, description="countries per part")
    start_year: int | None = Field(None, ge=1900, le=2100, description="first year (with end_year)")
    end_year: int | None = Field(
        None, ge=1900, le=2100, validate_default=True, description="last year (with start_year)"
    )
    source: int | None = Field(None, ge=1, le=999, description="World Bank database id; default: the API's")
    per_page: int = Field(DEFAULT_PER_PAGE, ge=1, le=MAX_PER_PAGE, description="rows per call")
    max_pages: int = Field(DEFAULT_MAX_PAGES, ge=1, le=1000, description="guard: calls per part")

    @field_validator("indicators")
    @classmethod
    def _indicators(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [i for i in v if not INDICATOR_RE.match(i)]
        if bad:
            raise ValueError(f"must be World Bank indicator ids like 'NY.GDP.MKTP.CD'; not {', '.join(map(repr, bad))}")
        return tuple(dict.fromkeys(v))

    @field_validator("countries")
    @classmethod
    def _countries(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(c.lower() == "all" for c in v):
            if len(v) > 1:
                raise ValueError('"all" cannot be combined with other country codes')
            return ("all",)
        bad = [c for c in v if not COUNTRY_RE.match(c)]
        if bad:
            raise ValueError(f"must be 2-3 letter country or aggregate codes; not {', '.join(map(repr, bad))}")
        return tuple(sorted({c.upper() for c in v}))

    @field_validator("end_year")
    @classmethod
    def _years(cls, v: int | None, info: ValidationInfo) -> int | None:
        if "start_year" not in info.data:  # start_year itself was invalid (and is reported)
            return v
        start = info.data["start_year"]
        if (start is None) != (v is None):
            raise ValueError("start_year and end_year go together")
        if start is not None and v is not None and start > v:
            raise ValueError("must not be before start_year")
        return v


def batches(countries: tuple[str, ...], size: int) -> list[tuple[str, ...]]:
    return [countries[i : i + size] for i in range(0, len(countries), size)]


def batch_label(batch: tuple[str, ...]) -> str:
    """A short, deterministic name for a batch of countries (it names the part and its cursor)."""
    if len(batch) <= 4:
        return "-".join(batch)
    digest = hashlib.sha1(";".join(batch).encode()).hexdigest()[:8]
    return f"{batch[0]}-{batch[-1]}-{len(batch)}c-{digest}"


class WorldBank(Source):
    name = "worldbank"
    description = "World Bank indicators (WDI and other databases) per country, re-fetched when they are updated"
    # WDI is updated a few times a year; a daily look costs one call per indicator.
    schedule = Schedule(cron="40 5 * * *", time_zone="UTC")
    # No published rate limit: stay polite, one part at a time per second, two in flight.
    queue = QueueConfig(
        max_dispatches_per_second=1,
        max_concurrent_dispatches=2,
        max_attempts=6,
        min_backoff=30,
        max_backoff=1800,
        dispatch_deadline=900,
    )
    http_rate = "60/minute"
    params_model = WorldBankParams
    default_base_url = "https://api.worldbank.org/v2"
    schemas = {"indicators": COLUMNS}
    demo_params = {"indicators": ["NY.GDP.PCAP.CD"], "countries": ["BRA", "IND", "NGA"]}

    def dedup_params(self, params: Params, now: datetime) -> dict[str, Any]:
        # The same params on another day is another look at lastupdated: a new job.
        return {**super().dedup_params(params, now), "as_of": now.astimezone(UTC).strftime("%Y-%m-%d")}

    def plan(self, params: Params, ctx: Context) -> list[Part]:
        """One part per (indicator, country batch) whose ``lastupdated`` moved past its cursor.

        One cheap call per indicator (``per_page=1``) reads ``lastupdated`` (the date the indicator's
        database was last updated). When nothing moved, the plan is empty: nothing is written.

        Raises:
            PermanentError: the API refused the indicator or a country (its message is kept).
        """
        assert isinstance(params, WorldBankParams)
        groups = batches(params.countries, params.batch_size)
        specs: list[tuple[str, dict[str, Any]]] = []
        for indicator in params.indicators:
            meta = self._probe(indicator, groups[0], params, ctx)
            lastupdated = meta.get("lastupdated")
            for batch in groups:
                key = ".".join(
                    [indicator, batch_label(batch)]
                    + ([f"{params.start_year}-{params.end_year}"] if params.start_year else [])
                    + ([f"s{params.source}"] if params.source else [])
                )
                known = ctx.state.cursors.get(key)
                if lastupdated and known and lastupdated <= known:
                    log.info("%s: lastupdated %s, already stored (cursor %s)", key, lastupdated, known)
                    continue
                specs.append((key, {"indicator": indicator, "countries": list(batch), "lastupdated": lastupdated}))
        return [
            Part(
                key=key,
                index=index,
                total=len(specs),
                stream="indicators",
                partition=spec["indicator"],
                cursor=key,
                params={**spec, **self._query_params(params)},
            )
            for index, (key, spec) in enumerate(specs)
        ]

    @staticmethod
    def _query_params(params: WorldBankParams) -> dict[str, Any]:
        out: dict[str, Any] = {"per_page": params.per_page, "max_pages": params.max_pages}
        if params.start_year is not None:
            out["date"] = f"{params.start_year}:{params.end_year}"
        if params.source is not None:
            out["source"] = params.source
        return out

    def _probe(self, indicator: str, batch: tuple[str, ...], params: WorldBankParams, ctx: Context) -> dict[str, Any]:
        query = {**self._query_params(params), "format": "json", "per_page": 1, "page": 1}
        query.pop("max_pages")
        label = f"{indicator} ({';'.join(batch)})"
        meta, _ = split_page(_decode(_get(_url(ctx.base_url, indicator, batch), query, ctx), label), label)
        return meta

    def fetch(self, part: Part, ctx: Context) -> Raw:
        """Every page of the part, one ``[meta, rows]`` body per line, into ``<key>.ndjson``.

        Raises:
            PermanentError: an in-band API error, or more pages than ``max_pages``.
            TransientError: a body that is not JSON, or the series changed while paging.
        """
        p = part.params
        url = _url(ctx.base_url, p["indicator"], tuple(p["countries"]))
        query: dict[str, Any] = {"format": "json", "per_page": p["per_page"]}
        query.update({k: p[k] for k in ("date", "source") if k in p})
        dest = ctx.workdir / f"{part.key}.ndjson"
        pager = PageNumberPaginator()
        total: int | None = None
        rows_seen = 0
        first_updated: str | None = None
        with dest.open("wb") as out:
            while pager.has_next:
                label = f"{part.key} page {pager.page}"
                doc = _decode(_get(url, {**query, **pager.params()}, ctx), label)
                meta, rows = split_page(doc, label)
                if total is None:
                    # The first answer's page count is the one to trust (the paginator keeps it): past
                    # the end the API answers a recalculated one.
                    total, first_updated = meta["total"], meta.get("lastupdated")
                    if meta["pages"] > p["max_pages"]:
                        raise PermanentError(
                            f"{part.key}: {total:,} rows in {meta['pages']} pages of {p['per_page']:,} exceeds "
                            f"max_pages={p['max_pages']}; raise per_page or lower batch_size"
                        )
                elif meta.get("lastupdated") != first_updated or meta["total"] != total:
                    raise TransientError(f"{part.key}: the series was updated while paging (page {pager.page}); retry")
                out.write(orjson.dumps(doc) + b"\n")
                rows_seen += len(rows)
                pager.update_state(count=len(rows), total=meta["pages"])
        if rows_seen != total:
            raise TransientError(f"{part.key}: got {rows_seen:,} rows where the API announced {total:,}; retry")
        size = dest.stat().st_size
        return Raw(
            path=dest,
            size=size,
            name=dest.name,
            content_type="application/x-ndjson",
            meta={"lastupdated": first_updated, "total": total},
        )

    def parse(self, stream: IO[bytes], part: Part) -> Iterator[Record]:
        return parse_pages(stream, label=part.key)

    def watermark(self, part: Part, records: int) -> str | None:
        value = part.params.get("lastupdated")
        return str(value) if value else None


def _url(base: str, indicator: str, countries: tuple[str, ...]) -> str:
    return f"{base}/country/{';'.join(countries)}/indicator/{indicator}"


def classify_response(response: httpx.Response) -> IngestError | None:
    """A 400 whose body is an HTML page, not JSON, is a known passing fault: transient, so it is retried
    in the task. Every other answer is classified by its status."""
    if response.status_code == 400 and response.content.lstrip().startswith(b"<"):
        return response_error(response, transient=True, note="(an HTML error page, which this API sends in passing)")
    return None


def _get(url: str, query: dict[str, Any], ctx: Context) -> bytes:
    """GET one page (see :func:`classify_response`)."""
    return ctx.http.get(url, params=query, classify=classify_response).content


def _decode(body: bytes, label: str) -> Any:
    """A page body as JSON (a leading UTF-8 BOM allowed). A body that is not JSON is retried."""
    try:
        return orjson.loads(body.removeprefix(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError as exc:
        raise TransientError(f"{label}: the World Bank answered a body that is not JSON: {body[:120]!r}") from exc


#: ``(id, key, value)`` of each message of an in-band error body.
ApiMessages = list[tuple[str, str, str]]


def api_error(doc: Any) -> ApiMessages | None:
    """``(id, key, value)`` messages of an in-band error body ``[{"message": [...]}]``, or None."""
    if not (isinstance(doc, list) and doc and isinstance(doc[0], dict) and "message" in doc[0]):
        return None
    messages = doc[0]["message"]
    if isinstance(messages, dict):
        messages = [messages]
    if not isinstance(messages, list):
        return [("", "", str(messages))]
    return [
        (str(m.get("id", "")), str(m.get("key", "")), str(m.get("value", "")))
        if isinstance(m, dict)
        else ("", "", str(m))
        for m in messages
    ]


def split_page(doc: Any, label: str) -> tuple[dict[str, Any], list[Any]]:
    """``(meta, rows)`` of one ``[meta, rows]`` page; ``meta`` has int page/pages/per_page/total.

    Raises:
        PermanentError: an in-band error body (the API's messages are kept) or another shape.
        TransientError: an in-band error the API marks as a passing outage (id 105).
    """
    errors = api_error(doc)
    if errors is not None:
        text = "; ".join(f"{value or key} (id {ident}, {key})" if ident else value for ident, key, value in errors)
        cls = TransientError if any(ident in TRANSIENT_ERROR_IDS for ident, _, _ in errors) else PermanentError
        raise cls(f"{label}: World Bank API error: {text}")
    if not (isinstance(doc, list) and len(doc) == 2 and isinstance(doc[0], dict)):
        shape = f"a JSON {type(doc).__name__}" + (f" of {len(doc)} items" if isinstance(doc, list) else "")
        raise PermanentError(f"{label}: not a World Bank [metadata, rows] page ({shape})")
    meta = dict(doc[0])
    for field in ("page", "pages", "total"):
        meta[field] = _meta_int(meta.get(field), field, label)
    rows = doc[1]
    if rows is None:  # the empty answer: [{"page":0,"pages":0,"per_page":null,"total":0},null]
        rows = []
    if not isinstance(rows, list):
        raise PermanentError(f"{label}: the rows are a JSON {type(rows).__name__}, not a list")
    return meta, rows


def _meta_int(value: Any, field: str, label: str) -> int:
    """Page metadata as int: the v1-era API wrote some of it as strings ("per_page": "5000")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise PermanentError(f"{label}: page metadata {field}={value!r} is not an integer")


def parse_pages(stream: IO[bytes], *, label: str = "worldbank") -> Iterator[Record]:
    """Records from NDJSON pages (one ``[meta, rows]`` body per line).

    Raises:
        PermanentError: a line that is not JSON, an error body, or a row that is not an observation.
    """
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        where = f"{label} page {lineno}"
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise PermanentError(f"{where}: not JSON: {exc}") from exc
        meta, rows = split_page(doc, where)
        yield from page_records(meta, rows, where)


def page_records(meta: dict[str, Any], rows: list[Any], where: str) -> Iterator[Record]:
    """Output rows of one page (``lastupdated`` and ``sourceid`` come from its metadata)."""
    updated = _date(meta.get("lastupdated"), where)
    source_id = _text(meta.get("sourceid"))
    for i, row in enumerate(rows):
        at = f"{where} row {i}"
        if not isinstance(row, dict) or not isinstance(row.get("indicator"), dict) or "country" not in row:
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise PermanentError(f"{at}: not an indicator observation (no indicator/country; has {keys})")
        indicator, country = row["indicator"], row.get("country") or {}
        period = _text(row.get("date"))
        if period is None or not indicator.get("id") or not country.get("id"):
            raise PermanentError(f"{at}: an observation needs indicator.id, country.id and date")
        yield {
            "indicator_id": str(indicator["id"]),
            "indicator_name": _text(indicator.get("value")),
            "country_id": str(country["id"]),
            "country_name": _text(country.get("value")),
            "countryiso3code": _text(row.get("countryiso3code")),
            "date": period,
            "year": int(period[:4]) if period[:4].isdigit() else None,
            "value": _number(row.get("value"), at),
            "unit": _text(row.get("unit")),
            "obs_status": _text(row.get("obs_status")),
            "decimal": _decimal(row.get("decimal"), at),
            "lastupdated": updated,
            "source_id": source_id,
        }


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _number(value: Any, at: str) -> float | None:
    """The observation value: null stays None; the v1-era API wrote numbers as strings ("13.5")."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise PermanentError(f"{at}: value {value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PermanentError(f"{at}: value {value!r} is not a number") from None


def _decimal(value: Any, at: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PermanentError(f"{at}: decimal {value!r} is not an integer") from None


def _date(value: Any, where: str) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise PermanentError(f"{where}: lastupdated {value!r} is not a date") from None
