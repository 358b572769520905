"""ReliefWeb: humanitarian reports and disasters, fetched incrementally on ``date.changed``."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, Literal

import orjson
from pydantic import Field, ValidationInfo, field_validator

from common.core.errors import BadParams, IngestError, PermanentError, TransientError
from common.sources.base import (
    Column,
    Context,
    OffsetPaginator,
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

#: The appname ReliefWeb asks every caller to send (not a secret). Since 1 Nov 2025 it must be
#: pre-approved by ReliefWeb; set an approved one as ``params.appname`` or in this variable.
APPNAME_ENV = "TRIBUTARY_RELIEFWEB_APPNAME"
DEFAULT_APPNAME = "tributary"
#: ReliefWeb refuses ``limit`` above 1000 ("Valid values are between 0 and 1000").
MAX_LIMIT = 1000
DEFAULT_MAX_PAGES = 20
#: A document changed a moment ago may not be searchable yet: windows end this long before now,
#: so the cursor never passes a change the search index has not caught up with.
INDEX_LAG = timedelta(minutes=15)
#: How far back the very first incremental run (no cursor, no ``since``) looks.
DEFAULT_LOOKBACK = timedelta(days=1)
DEFAULT_WINDOW_HOURS = 24 * 7
#: Cursor format: fixed width and always UTC, so string order is time order.
CURSOR_FORMAT = "%Y-%m-%dT%H:%M:%S+00:00"
ISO3_RE = re.compile(r"^[A-Za-z]{3}$")
APPNAME_RE = re.compile(r"^[A-Za-z0-9._@:-]{1,100}$")

Stream = Literal["reports", "disasters"]

#: Fields asked of each endpoint (``fields[include][]``), then the output columns built from them.
FIELDS: dict[str, tuple[str, ...]] = {
    "reports": (
        "title",
        "status",
        "date.created",
        "date.changed",
        "date.original",
        "url_alias",
        "origin",
        "source.name",
        "source.shortname",
        "primary_country.iso3",
        "country.iso3",
        "format.name",
        "theme.name",
        "language.code",
        "disaster.glide",
        "disaster_type.name",
    ),
    "disasters": (
        "name",
        "status",
        "glide",
        "date.created",
        "date.changed",
        "date.event",
        "url_alias",
        "primary_country.iso3",
        "country.iso3",
        "type.name",
    ),
}

_J = "JSON array of strings"
REPORTS = (
    Column("id", "INT64", "REQUIRED", "ReliefWeb node id"),
    Column("title", "STRING"),
    Column("status", "STRING", description="published, to-review, ..."),
    Column("date_created", "TIMESTAMP"),
    Column("date_changed", "TIMESTAMP", description="last edit; the incremental cursor"),
    Column("date_original", "TIMESTAMP", description="publication date at the original source"),
    Column("url_alias", "STRING"),
    Column("origin", "STRING", description="URL of the original publication"),
    Column("source_names", "STRING", description=_J),
    Column("source_shortnames", "STRING", description=_J),
    Column("primary_country_iso3", "STRING", description="lower case, as ReliefWeb has it"),
    Column("country_iso3", "STRING", description=_J),
    Column("format_names", "STRING", description=_J),
    Column("theme_names", "STRING", description=_J),
    Column("language_codes", "STRING", description=_J),
    Column("disaster_glides", "STRING", description=_J),
    Column("disaster_type_names", "STRING", description=_J),
    Column("api_href", "STRING"),
    Column("fields_json", "STRING", description="the item's whole `fields` object, as JSON"),
)
DISASTERS = (
    Column("id", "INT64", "REQUIRED", "ReliefWeb taxonomy term id"),
    Column("name", "STRING"),
    Column("status", "STRING", description="alert, current, past"),
    Column("glide", "STRING"),
    Column("date_created", "TIMESTAMP"),
    Column("date_changed", "TIMESTAMP", description="last edit; the incremental cursor"),
    Column("date_event", "TIMESTAMP"),
    Column("url_alias", "STRING"),
    Column("primary_country_iso3", "STRING"),
    Column("country_iso3", "STRING", description=_J),
    Column("type_names", "STRING", description=_J),
    Column("api_href", "STRING"),
    Column("fields_json", "STRING", description="the item's whole `fields` object, as JSON"),
)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def cursor_str(when: datetime) -> str:
    return _utc(when).strftime(CURSOR_FORMAT)


class ReliefWebParams(Params):
    """A window of ``date.changed`` per stream: ``(since, until]``; both default to "incremental"."""

    streams: tuple[Stream, ...] = Field(("reports", "disasters"), min_length=1, description="reports, disasters")
    since: datetime | None = Field(None, description="changed strictly after (UTC); default: the stream's cursor")
    until: datetime | None = Field(None, description="changed at or before (UTC); default: now minus the index lag")
    countries: tuple[str, ...] = Field((), description="ISO3 codes to filter on (country.iso3); default: all")
    appname: str | None = Field(None, description=f"pre-approved ReliefWeb appname; default ${APPNAME_ENV}")
    window_hours: int = Field(DEFAULT_WINDOW_HOURS, ge=1, le=24 * 31, description="one part per window")
    page_size: int = Field(MAX_LIMIT, ge=1, le=MAX_LIMIT, description="items per call (ReliefWeb max 1000)")
    max_pages: int = Field(DEFAULT_MAX_PAGES, ge=1, le=200, description="guard: calls per part")

    @field_validator("streams")
    @classmethod
    def _unique_streams(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v))

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return None if v is None else _utc(v).replace(microsecond=0)

    @field_validator("countries")
    @classmethod
    def _iso3(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [c for c in v if not ISO3_RE.match(c)]
        if bad:
            raise ValueError(f"must be ISO 3166 alpha-3 codes like 'npl'; not {', '.join(map(repr, bad))}")
        return tuple(sorted({c.lower() for c in v}))

    @field_validator("appname")
    @classmethod
    def _appname(cls, v: str | None) -> str | None:
        if v is not None and not APPNAME_RE.match(v):
            raise ValueError("must be 1-100 characters: letters, digits and . _ @ : -")
        return v

    @field_validator("until")
    @classmethod
    def _after_since(cls, v: datetime | None, info: ValidationInfo) -> datetime | None:
        since = info.data.get("since")
        if v is not None and since is not None and v <= since:
            raise ValueError("must be after since")
        return v


def _label(codes: tuple[str, ...]) -> str:
    """A short, deterministic name for a country filter (part keys and cursor names)."""
    if len(codes) <= 3:
        return "-".join(codes)
    return f"{len(codes)}c-{hashlib.sha1(','.join(codes).encode()).hexdigest()[:8]}"


def cursor_name(stream: str, countries: tuple[str, ...]) -> str:
    """The cursor a stream advances: one per stream and country filter."""
    return f"{stream}:{','.join(countries)}" if countries else stream


def windows(after: datetime, until: datetime, hours: int) -> Iterator[tuple[datetime, datetime]]:
    """``(after, until]`` cut into consecutive half-open windows of at most ``hours``."""
    step = timedelta(hours=hours)
    start = after
    while start < until:
        end = min(start + step, until)
        yield start, end
        start = end


class ReliefWeb(Source):
    name = "reliefweb"
    description = "ReliefWeb humanitarian reports and disasters (OCHA), incremental on the date they last changed"
    schedule = Schedule(cron="17 * * * *", time_zone="UTC")
    # Published quota: 1,000 calls a day per appname and 1,000 items per call. 0.01 parts/s is at most
    # 864 parts a day; an hourly run is one or two calls, so backfills keep most of the day's budget.
    queue = QueueConfig(
        max_dispatches_per_second=0.01,
        max_concurrent_dispatches=1,
        max_attempts=6,
        min_backoff=60,
        max_backoff=1800,
        dispatch_deadline=900,
    )
    http_rate = "30/minute"
    params_model = ReliefWebParams
    default_base_url = "https://api.reliefweb.int/v2"
    schemas = {"reports": REPORTS, "disasters": DISASTERS}
    demo_params = {"streams": ["reports"], "since": "2024-01-15T00:00:00Z", "until": "2024-01-16T00:00:00Z"}
    backfill_window = timedelta(hours=DEFAULT_WINDOW_HOURS)

    @staticmethod
    def appname(params: ReliefWebParams) -> str:
        """The appname to send: the param, else ``$TRIBUTARY_RELIEFWEB_APPNAME``, else "tributary"."""
        return params.appname or os.environ.get(APPNAME_ENV) or DEFAULT_APPNAME

    def dedup_params(self, params: Params, now: datetime) -> dict[str, Any]:
        out = super().dedup_params(params, now)
        if "until" not in out:  # "up to now": one job per hour, like the schedule
            out["as_of"] = _utc(now).strftime("%Y-%m-%dT%H:00:00Z")
        return out

    def backfill(self, start: datetime, end: datetime, params: Params, ctx: Context) -> list[dict[str, Any]]:
        """One child job per ``backfill_window`` of changes in ``(start, end]``, with explicit since/until.

        Raises:
            BadParams: the range is empty.
        """
        assert isinstance(params, ReliefWebParams)
        if end <= start:
            raise BadParams("the backfill range is empty: end must be after start", field="end")
        base = params.model_dump(mode="json", exclude_none=True, exclude={"since", "until"})
        hours = int(self.backfill_window.total_seconds() // 3600)
        return [
            {**base, "since": cursor_str(lo), "until": cursor_str(hi)}
            for lo, hi in windows(_utc(start), _utc(end), hours)
        ]

    def plan(self, params: Params, ctx: Context) -> list[Part]:
        assert isinstance(params, ReliefWebParams)
        horizon = (_utc(ctx.now) - INDEX_LAG).replace(second=0, microsecond=0)
        until = min(params.until, horizon) if params.until else horizon
        label = _label(params.countries)
        appname = self.appname(params)
        specs: list[tuple[str, datetime, datetime, str | None]] = []
        for stream in params.streams:
            name = cursor_name(stream, params.countries)
            known = ctx.state.cursors.get(name)
            known_at = datetime.fromisoformat(known) if known else None
            if params.since is not None:
                after = params.since
            elif known_at is not None:
                after = known_at
            else:
                after = until - DEFAULT_LOOKBACK
            # An explicit window advances the cursor only if it leaves no gap behind it.
            tracks = params.since is None or known_at is None or params.since <= known_at
            for start, end in windows(after, until, params.window_hours):
                specs.append((stream, start, end, name if tracks else None))
        parts = []
        for index, (kind, start, end, cursor) in enumerate(specs):
            key = f"{kind}.{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}" + (f".{label}" if label else "")
            parts.append(
                Part(
                    key=key,
                    index=index,
                    total=len(specs),
                    stream=kind,
                    partition=f"{start:%Y/%m/%d}",
                    cursor=cursor,
                    params={
                        "after": cursor_str(start),
                        "until": cursor_str(end),
                        "countries": list(params.countries),
                        "appname": appname,
                        "page_size": params.page_size,
                        "max_pages": params.max_pages,
                    },
                )
            )
        return parts

    def query(self, part: Part, offset: int) -> list[tuple[str, str | int]]:
        """The GET query of one page: the window filter, a stable sort, the fields, the page."""
        p = part.params
        q: list[tuple[str, str | int]] = [
            ("appname", p["appname"]),
            ("offset", offset),
            ("limit", p["page_size"]),
            ("filter[operator]", "AND"),
            ("filter[conditions][0][field]", "date.changed"),
            ("filter[conditions][0][value][from]", p["after"]),
            ("filter[conditions][0][value][to]", p["until"]),
        ]
        if p.get("countries"):
            q += [("filter[conditions][1][field]", "country.iso3"), ("filter[conditions][1][operator]", "OR")]
            q += [("filter[conditions][1][value][]", code) for code in p["countries"]]
        # Offset paging needs a total order: date.changed has ties, the id breaks them.
        q += [("sort[]", "date.changed:asc"), ("sort[]", "id:asc")]
        q += [("fields[include][]", f) for f in FIELDS[part.stream]]
        return q

    def fetch(self, part: Part, ctx: Context) -> Raw:
        """All pages of the part's window, one JSON body per line (NDJSON) in ``<key>.ndjson``.

        Raises:
            PermanentError: the appname was refused, an error body, or more pages than ``max_pages``.
            TransientError: a body that is not JSON, or the window changed while paging.
        """
        url = f"{ctx.base_url}/{part.stream}"
        dest = ctx.workdir / f"{part.key}.ndjson"
        page_size, max_pages = int(part.params["page_size"]), int(part.params["max_pages"])
        pager = OffsetPaginator(page_size)
        classify = refused_appname(part.params["appname"])
        with dest.open("wb") as out:
            while pager.has_next:
                if pager.pages >= max_pages:
                    raise PermanentError(f"{part.key}: more than max_pages={max_pages} pages; use a smaller window")
                offset, label = pager.offset, f"{part.key} offset {pager.offset}"
                page = _decode(ctx.http.get(url, params=self.query(part, offset), classify=classify).content, label)
                items = page_items(page, label)
                count = _int(page.get("totalCount"), "totalCount", part.key)
                if pager.total is None:
                    if -(-count // page_size) > max_pages:
                        raise PermanentError(
                            f"{part.key}: {count:,} {part.stream} changed in this window, more than "
                            f"max_pages={max_pages} x page_size={page_size}; use a smaller window_hours"
                        )
                elif count != pager.total:
                    raise TransientError(f"{part.key}: totalCount moved from {pager.total} to {count} while paging")
                out.write(orjson.dumps(page) + b"\n")
                if not items and offset < count:
                    raise TransientError(f"{part.key}: empty page at offset {offset} of {count}")
                pager.update_state(count=len(items), total=count)
        total = pager.total
        size = dest.stat().st_size
        return Raw(path=dest, size=size, name=dest.name, content_type="application/x-ndjson", meta={"total": total})

    def parse(self, stream: IO[bytes], part: Part) -> Iterator[Record]:
        return parse_pages(stream, part.stream, after=part.params.get("after"), until=part.params.get("until"))

    def watermark(self, part: Part, records: int) -> str | None:
        # The whole window is stored (empty or not), so the position is its end.
        return str(part.params["until"]) if part.cursor else None


def refused_appname(appname: str) -> Callable[[httpx.Response], IngestError | None]:
    """The response hook: a 401/403 means the appname was refused, which says how to get one approved."""

    def classify(response: httpx.Response) -> IngestError | None:
        if response.status_code not in (401, 403):
            return None
        return response_error(
            response,
            message=f"ReliefWeb refused appname {appname!r} (HTTP {response.status_code}): since 1 November 2025 "
            f"the API needs a pre-approved appname (request one at https://apidoc.reliefweb.int/parameters"
            f"#appname), set as params.appname or ${APPNAME_ENV}",
        )

    return classify


def _int(value: Any, field: str, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PermanentError(f"{label}: {field} is {value!r}, not an integer")
    return value


def _decode(body: bytes, label: str) -> dict[str, Any]:
    """One page body as a dict. A body that is not JSON is a proxy or maintenance page: retry later."""
    try:
        page = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TransientError(f"{label}: ReliefWeb answered a body that is not JSON: {body[:120]!r}") from exc
    if not isinstance(page, dict):
        raise PermanentError(f"{label}: ReliefWeb answered a JSON {type(page).__name__}, not an object")
    return page


def page_items(page: dict[str, Any], label: str) -> list[dict[str, Any]]:
    """The ``data`` list of one list response.

    Raises:
        PermanentError: an error body (with ReliefWeb's message) or a body without a ``data`` list.
    """
    if "error" in page:
        err = page["error"]
        message = err.get("message") if isinstance(err, dict) else err
        raise PermanentError(f"{label}: ReliefWeb error (status {page.get('status', '?')}): {message}")
    data = page.get("data")
    if not isinstance(data, list):
        raise PermanentError(f"{label}: not a ReliefWeb list response (no `data` list; keys: {sorted(page)})")
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "id" not in item or not isinstance(item.get("fields", {}), dict):
            raise PermanentError(f"{label}: data[{i}] is not an item with an id and a fields object")
    return data


def parse_pages(
    stream: IO[bytes], kind: str, *, after: str | None = None, until: str | None = None
) -> Iterator[Record]:
    """Records from NDJSON pages (one list response per line), kept to ``after < date.changed <= until``.

    The window bounds make the output exact whatever ReliefWeb does at the edges (its range filter
    includes both ends), so consecutive windows never store a change twice. An item is also stored
    once per part even if offset paging served it twice.

    Raises:
        PermanentError: a line that is not JSON, an error body, or an item that breaks the format.
    """
    lo = datetime.fromisoformat(after) if after else None
    hi = datetime.fromisoformat(until) if until else None
    seen: set[int] = set()
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        label = f"{kind} page {lineno}"
        try:
            page = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise PermanentError(f"{label}: not JSON: {exc}") from exc
        if not isinstance(page, dict):
            raise PermanentError(f"{label}: a JSON {type(page).__name__}, not a ReliefWeb list response")
        for item in page_items(page, label):
            record = to_record(kind, item, label)
            changed = record["date_changed"]
            if changed is not None and ((lo and changed <= lo) or (hi and changed > hi)):
                continue
            if record["id"] in seen:
                continue
            seen.add(record["id"])
            yield record


def to_record(kind: str, item: dict[str, Any], label: str) -> Record:
    """One output row from one ``data`` item.

    Raises:
        PermanentError: the id is not an integer, or a date is not ISO 8601.
    """
    try:
        ident = int(item["id"])
    except (TypeError, ValueError):
        raise PermanentError(f"{label}: item id {item.get('id')!r} is not an integer") from None
    f: dict[str, Any] = item.get("fields") or {}
    date: dict[str, Any] = f["date"] if isinstance(f.get("date"), dict) else {}
    where = f"{label}: item {ident}"
    common = {
        "id": ident,
        "status": _str(f.get("status")),
        "date_created": _ts(date.get("created"), where),
        "date_changed": _ts(date.get("changed"), where),
        "url_alias": _str(f.get("url_alias")),
        "primary_country_iso3": _str(_one(f.get("primary_country"), "iso3")),
        "country_iso3": _list(f.get("country"), "iso3"),
        "api_href": _str(item.get("href")),
        "fields_json": orjson.dumps(f, option=orjson.OPT_SORT_KEYS).decode() if f else None,
    }
    if kind == "disasters":
        return {
            **common,
            "name": _str(f.get("name")),
            "glide": _str(f.get("glide")),
            "date_event": _ts(date.get("event"), where),
            "type_names": _list(f.get("type"), "name"),
        }
    return {
        **common,
        "title": _str(f.get("title")),
        "date_original": _ts(date.get("original"), where),
        "origin": _str(f.get("origin")),
        "source_names": _list(f.get("source"), "name"),
        "source_shortnames": _list(f.get("source"), "shortname"),
        "format_names": _list(f.get("format"), "name"),
        "theme_names": _list(f.get("theme"), "name"),
        "language_codes": _list(f.get("language"), "code"),
        "disaster_glides": _list(f.get("disaster"), "glide"),
        "disaster_type_names": _list(f.get("disaster_type"), "name"),
    }


def _str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _ts(value: Any, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return _utc(datetime.fromisoformat(str(value)))
    except ValueError:
        raise PermanentError(f"{where}: date {value!r} is not ISO 8601") from None


def _one(value: Any, key: str) -> Any:
    """A key of a taxonomy reference that may come as one object or a list of them."""
    if isinstance(value, list):
        value = value[0] if value else None
    return value.get(key) if isinstance(value, dict) else None


def _list(value: Any, key: str) -> str | None:
    """The ``key`` of each taxonomy reference, as a JSON array (None when there are none)."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return None
    found = [v[key] for v in value if isinstance(v, dict) and v.get(key) not in (None, "")]
    return orjson.dumps(found).decode() if found else None
