"""FRED: series observations with their ALFRED vintages, fetched incrementally per series."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import Field, ValidationInfo, field_validator

from common.core.errors import (
    ConfigError,
    IngestError,
    PermanentError,
    TransientError,
    UpstreamHTTPError,
    UpstreamPermanent,
    UpstreamTransient,
)
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
    default_classify,
    redact,
)

if TYPE_CHECKING:  # pragma: no cover
    import httpx

SECRET = "FRED_API_KEY"
SECRET_ENV = f"TRIBUTARY_SECRET_{SECRET}"
OBSERVATIONS_PATH = "/fred/series/observations"
VINTAGEDATES_PATH = "/fred/series/vintagedates"
DEFAULT_SERIES = ("DFF", "DGS10", "UNRATE", "GDP")
MAX_SERIES = 500
#: FRED's earliest and latest real-time dates ("the beginning and the end of time" in its docs).
EARLIEST = "1776-07-04"
LATEST = "9999-12-31"
#: FRED dates its vintages in St. Louis time.
FRED_TZ = ZoneInfo("America/Chicago")
#: Per-request maxima of the two endpoints (``limit``).
OBSERVATIONS_LIMIT = 100_000
VINTAGEDATES_LIMIT = 10_000
#: FRED refuses an observations request whose real-time window holds more vintage dates than this
#: ("This exceeds the maximum number of vintage dates allowed (2000)"), so windows are cut below it.
MAX_VINTAGES_PER_REQUEST = 2000
#: A missing value in a FRED payload.
MISSING = "."
SERIES_RE = re.compile(r"^[A-Z0-9_]{1,64}$")
NUMBER_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
#: FRED's message in an error body cut short (the error keeps the body's first characters only).
ERROR_MESSAGE_RE = re.compile(r'"error_message"\s*:\s*"((?:[^"\\]|\\.)*)"')

OBSERVATIONS = (
    Column("series_id", "STRING", "REQUIRED", "FRED series id, e.g. GDP"),
    Column("date", "DATE", "REQUIRED", "observation date (start of the period)"),
    Column("realtime_start", "DATE", "REQUIRED", "first day this value was the published one (its vintage)"),
    Column(
        "realtime_end",
        "DATE",
        "REQUIRED",
        "last day of the vintage as FRED reported it, cut at the end of the fetched real-time window",
    ),
    Column("value", "FLOAT64", "NULLABLE", "the value; NULL where FRED has '.' (no value in that vintage)"),
)


def fred_today(now: datetime) -> date:
    """Today's date in FRED's calendar (the date its new vintages carry)."""
    return now.astimezone(FRED_TZ).date()


class FredParams(Params):
    """Series to fetch and, optionally, a window of observation dates and of vintages (real time).

    With neither window the job is incremental: each series picks up the vintages (new and revised
    observations) published since its cursor. With a window the job fetches exactly that, and leaves
    the cursors alone.
    """

    series: tuple[str, ...] = Field(
        DEFAULT_SERIES,
        min_length=1,
        max_length=MAX_SERIES,
        description="FRED series ids (a list, or one comma-separated string)",
    )
    observation_start: date | None = Field(None, description="first observation date (YYYY-MM-DD)")
    observation_end: date | None = Field(None, description="last observation date (YYYY-MM-DD)")
    realtime_start: date | None = Field(None, description="first vintage date (YYYY-MM-DD, from 1776-07-04)")
    realtime_end: date | None = Field(
        None, validate_default=True, description="last vintage date (YYYY-MM-DD; 9999-12-31 for up to now)"
    )

    @field_validator("series", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [s for s in v.split(",") if s.strip()] if isinstance(v, str) else v

    @field_validator("series")
    @classmethod
    def _series(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for raw in v:
            sid = raw.strip().upper()
            if not SERIES_RE.match(sid):
                raise ValueError(f"{raw!r} is not a FRED series id (letters, digits and underscores, e.g. GDP)")
            out.append(sid)
        return tuple(dict.fromkeys(out))

    @field_validator("realtime_start")
    @classmethod
    def _earliest(cls, v: date | None) -> date | None:
        if v is not None and v.isoformat() < EARLIEST:
            raise ValueError(f"FRED's real time starts at {EARLIEST}")
        return v

    @field_validator("observation_end")
    @classmethod
    def _obs_order(cls, v: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("observation_start")
        if v is not None and start is not None and v < start:
            raise ValueError(f"must not be before observation_start ({start})")
        return v

    @field_validator("realtime_end")
    @classmethod
    def _rt_pair(cls, v: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("realtime_start")
        if "realtime_start" not in info.data:
            return v  # realtime_start itself was invalid: that error is reported
        if start is None and v is not None:
            raise ValueError("needs realtime_start too (the vintage window has two ends)")
        if start is not None and v is None:
            raise ValueError(f"needs a value when realtime_start is set (e.g. {LATEST} for every vintage since)")
        if start is not None and v is not None and v < start:
            raise ValueError(f"must not be before realtime_start ({start})")
        return v

    @property
    def incremental(self) -> bool:
        return all(
            x is None for x in (self.observation_start, self.observation_end, self.realtime_start, self.realtime_end)
        )


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


class Fred(Source):
    name = "fred"
    description = "FRED economic series observations with their ALFRED vintages (realtime_start/realtime_end)"
    # Early morning in St. Louis: yesterday's vintages are complete, and 04:15 is clear of the hours
    # that daylight saving skips or repeats.
    schedule = Schedule(cron="15 4 * * *", time_zone="America/Chicago")
    # FRED allows 120 requests/minute per key. One part at a time (so the in-process limiter below is
    # the only client of the key) and at most one new part a second; each part makes 1 to a few requests.
    queue = QueueConfig(
        max_dispatches_per_second=1,
        max_concurrent_dispatches=1,
        max_attempts=6,
        min_backoff=60,  # a 429 outlives FRED's one-minute window
        max_backoff=900,
        max_doublings=4,
        dispatch_deadline=600,
    )
    http_rate = "120/minute"
    secrets = (SECRET,)
    params_model = FredParams
    default_base_url = "https://api.stlouisfed.org"
    schemas = {"observations": OBSERVATIONS}
    demo_params = {"series": ["DFF", "GDP"]}

    def dedup_params(self, params: Params, now: datetime) -> dict[str, object]:
        """Incremental jobs are one per FRED day; a window that reaches today is re-asked each day."""
        assert isinstance(params, FredParams)
        out = super().dedup_params(params, now)
        today = fred_today(now)
        if params.incremental:
            out["through"] = (today - timedelta(days=1)).isoformat()
        elif params.realtime_end is None or params.realtime_end >= today:
            out["as_of"] = today.isoformat()
        return out

    def backfill(self, start: datetime, end: datetime, params: Params, ctx: Context) -> list[dict[str, Any]]:
        """One child job over the vintages of ``[start, end)``: the values current on its first day and
        every vintage published until its last. Its parts cut the window under FRED's vintage cap
        themselves, so splitting the range into more jobs would only add overlapping snapshots.
        """
        assert isinstance(params, FredParams)
        first, last = start.date(), (end - timedelta(microseconds=1)).date()
        base = params.model_dump(mode="json", exclude_none=True, exclude={"realtime_start", "realtime_end"})
        return [{**base, "realtime_start": first.isoformat(), "realtime_end": max(first, last).isoformat()}]

    def plan(self, params: Params, ctx: Context) -> list[Part]:
        """One part per series. Incremental parts cover the vintages after the series' cursor up to yesterday.

        Raises:
            PermanentError: a stored cursor is not a date.
        """
        assert isinstance(params, FredParams)
        yesterday = (fred_today(ctx.now) - timedelta(days=1)).isoformat()
        obs = {"observation_start": _iso(params.observation_start), "observation_end": _iso(params.observation_end)}
        parts = []
        for index, sid in enumerate(params.series):
            if params.incremental:
                after = _cursor(ctx.state.cursors.get(sid), sid)
                start = after or EARLIEST
                window = {"realtime_start": start, "realtime_end": max(yesterday, start), "after": after}
                # Named by where the window starts, not where it ends: a job that fails (so the cursor
                # stays put) is redone into the same object, a superset, never beside it.
                key, cursor = (f"{sid}.after_{after}" if after else f"{sid}.full"), sid
            else:
                rt_start, rt_end = _iso(params.realtime_start), _iso(params.realtime_end)
                window = {"realtime_start": rt_start, "realtime_end": rt_end, "after": None}
                key = f"{sid}.rt_{rt_start}_{rt_end}" if rt_start else f"{sid}.current"
                if params.observation_start or params.observation_end:
                    key += f".obs_{obs['observation_start'] or 'first'}_{obs['observation_end'] or 'last'}"
                cursor = None
            parts.append(
                Part(
                    key=key,
                    index=index,
                    total=len(params.series),
                    stream="observations",
                    partition=sid,
                    cursor=cursor,
                    params={"series_id": sid, **window, **obs},
                )
            )
        return parts

    def fetch(self, part: Part, ctx: Context) -> Raw:
        """The part's FRED answers, one per NDJSON line: vintage dates first, then observation pages.

        A real-time window is cut so no request holds more than 2000 vintage dates (FRED's cap), and an
        incremental part with no vintage since its cursor asks for no observations at all.

        Raises:
            ConfigError: the API key is not set.
            PermanentError: FRED refused the key, the series does not exist, or another 4xx / error body.
            TransientError: 429, 5xx, timeouts, or an answer that changed while paging.
        """
        key = ctx.secrets.get(SECRET)
        if not key:
            raise ConfigError(f"secret {SECRET} is not set (env {SECRET_ENV}; needed by source {self.name})")
        p = part.params
        sid = p["series_id"]
        client = _Client(ctx, key, sid)
        dest = ctx.workdir / f"{part.key}.ndjson"
        with dest.open("wb") as out:
            if p["realtime_start"] is None:
                windows: list[tuple[str | None, str | None]] = [(None, None)]
            else:
                vintages: list[str] = []
                query = {"realtime_start": p["realtime_start"], "realtime_end": p["realtime_end"]}
                for page, line in client.pages(VINTAGEDATES_PATH, query, "vintage_dates", VINTAGEDATES_LIMIT):
                    vintages += page["vintage_dates"]
                    out.write(line)
                windows = [
                    (lo, hi)
                    for lo, hi in vintage_windows(
                        p["realtime_start"], p["realtime_end"], vintages, exclusive=p["after"] is not None
                    )
                ]
            for lo, hi in windows:
                query = {"realtime_start": lo, "realtime_end": hi}
                query |= {k: p[k] for k in ("observation_start", "observation_end") if p.get(k)}
                for page, line in client.pages(OBSERVATIONS_PATH, query, "observations", OBSERVATIONS_LIMIT):
                    if lo is not None and page.get("realtime_start") != lo:
                        raise PermanentError(
                            f"FRED answered series {sid} for real time from {page.get('realtime_start')!r}, "
                            f"not the {lo} asked for"
                        )
                    out.write(line)
        return Raw(
            path=dest,
            size=dest.stat().st_size,
            name=dest.name,
            content_type="application/x-ndjson",
            meta={"requests": client.requests},
        )

    def parse(self, stream: IO[bytes], part: Part) -> Iterator[Record]:
        return parse_answers(stream, part)

    def watermark(self, part: Part, records: int) -> str | None:
        """Incremental parts: the last vintage date now stored (the end of the part's window)."""
        return str(part.params["realtime_end"]) if part.cursor else None


def _cursor(value: str | None, sid: str) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise PermanentError(f"the stored cursor of FRED series {sid} is not a date: {value!r}") from None


def vintage_windows(
    start: str, end: str, vintages: list[str], *, exclusive: bool, cap: int | None = None
) -> Iterator[tuple[str, str]]:
    """Real-time windows covering ``[start, end]`` that each hold at most ``cap`` vintage dates.

    Consecutive windows share a boundary vintage ``b``: FRED clips every vintage to the window asked
    for, so the rows of a later window that still show ``realtime_start == b`` are values already
    valid at ``b`` (fetched by the window before) and the parser drops them. ``exclusive``: the first
    window's start is a cursor already stored, so nothing new needs fetching without a later vintage.
    """
    cap = cap or MAX_VINTAGES_PER_REQUEST
    new = sorted(v for v in set(vintages) if start < v <= end)
    if not new:
        if not exclusive:
            yield start, end
        return
    step = cap - 1  # the window's first day may itself be a vintage date, and FRED counts it
    lo = start
    for i in range(0, len(new), step):
        chunk = new[i : i + step]
        last = i + step >= len(new)
        yield lo, end if last else chunk[-1]
        lo = chunk[-1]


class _Client:
    """FRED GET with the key in the query, FRED's error bodies mapped in the retry loop, and ``offset`` paging."""

    def __init__(self, ctx: Context, key: str, series_id: str) -> None:
        self.ctx, self.key, self.series_id = ctx, key, series_id
        self.requests = 0

    def pages(self, path: str, query: dict[str, Any], field: str, limit: int) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Every page of one request as (decoded, one NDJSON line)."""
        pager = OffsetPaginator(limit, omit_first_offset=True)
        while pager.has_next:
            q = {"series_id": self.series_id, **query, "file_type": "json", **pager.params()}
            q = {k: v for k, v in q.items() if v is not None}  # httpx would send None as "name="
            body = self._get(path, q)
            page = decode_answer(body, label=f"FRED {path} for series {self.series_id}", series_id=self.series_id)
            items = page.get(field)
            count = page.get("count")
            if not isinstance(items, list) or not isinstance(count, int):
                raise PermanentError(
                    f"FRED {path} for series {self.series_id}: no {field!r} list and count in the answer"
                )
            if pager.total is not None and count != pager.total:
                raise TransientError(f"FRED series {self.series_id} changed while paging ({pager.total} then {count})")
            pager.update_state(count=len(items), total=count)
            # JSON whitespace outside strings is insignificant and newlines inside strings are escaped.
            yield page, body.replace(b"\r", b" ").replace(b"\n", b" ").strip() + b"\n"

    def _get(self, path: str, query: dict[str, Any]) -> bytes:
        self.requests += 1
        url, params = f"{self.ctx.base_url}{path}", {**query, "api_key": self.key}
        return self.ctx.http.get(url, params=params, classify=self.classify, secrets=(self.key,)).content

    def classify(self, response: httpx.Response) -> IngestError | None:
        """A failed answer as FRED's own error (in the retry loop, so 429/5xx are retried in the task)."""
        error = default_classify(response, (self.key,))
        return None if error is None else http_error(error, self.series_id, self.key)


# ------------------------------------------------------------------------------------------ errors


def fred_error(
    status: int,
    message: str,
    series_id: str,
    *,
    key: str | None = None,
    retry_after: float | None = None,
    url: str = "",
) -> UpstreamHTTPError:
    """The error for a FRED error answer (``{"error_code": 400, "error_message": ...}`` or a bare status).

    429 and 5xx are transient; a refused key names the secret (never its value); the rest are permanent.
    """
    msg = redact(" ".join(message.split()), (key,) if key else ()) or "no message"

    def transient(text: str) -> UpstreamTransient:
        return UpstreamTransient(status, url, excerpt=msg, retry_after=retry_after, message=text)

    def permanent(text: str) -> UpstreamPermanent:
        return UpstreamPermanent(status, url, excerpt=msg, retry_after=retry_after, message=text)

    if status == 429:
        return transient(f"FRED rate limit (120 requests/minute per key) hit fetching series {series_id}: {msg}")
    if status >= 500 or status == 408:
        return transient(f"FRED answered {status} for series {series_id}: {msg}")
    if status in (401, 403) or "api_key" in msg.lower():
        return permanent(
            f"FRED refused the API key ({status}: {msg}); check secret {SECRET} (env {SECRET_ENV}) "
            "holds a registered 32-character FRED API key"
        )
    if "series does not exist" in msg.lower():
        return permanent(f"FRED series {series_id} does not exist ({status}: {msg})")
    return permanent(f"FRED refused the request for series {series_id} ({status}: {msg})")


def _error_message(detail: str) -> str:
    """FRED's ``error_message`` from an error body (possibly cut short), else the text itself."""
    try:
        body = orjson.loads(detail)
    except orjson.JSONDecodeError:
        m = ERROR_MESSAGE_RE.search(detail)
        return m.group(1) if m else detail.strip()
    if isinstance(body, dict) and "error_message" in body:
        return str(body["error_message"])
    return detail.strip()


def http_error(exc: UpstreamHTTPError, series_id: str, key: str | None = None) -> UpstreamHTTPError:
    """FRED's own error for a failed answer (its status and body excerpt; the key redacted)."""
    return fred_error(
        exc.status, _error_message(exc.excerpt), series_id, key=key, retry_after=exc.retry_after, url=exc.url
    )


# ------------------------------------------------------------------------------------------ parsing


def decode_answer(body: bytes, *, label: str, series_id: str) -> dict[str, Any]:
    """One FRED JSON answer, or the error its ``error_code`` stands for.

    Raises:
        TransientError: not JSON (an HTML maintenance page answered 200), or a 429/5xx error body.
        PermanentError: an error body, or JSON that is not an object.
    """
    try:
        page = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise TransientError(f"{label}: the answer is not JSON: {body[:80]!r}") from None
    return _checked(page, label=label, series_id=series_id)


def _checked(page: Any, *, label: str, series_id: str) -> dict[str, Any]:
    if not isinstance(page, dict):
        raise PermanentError(f"{label}: a FRED answer is a JSON object, not {type(page).__name__}")
    if "error_code" in page or "error_message" in page:
        code = page.get("error_code")
        raise fred_error(code if isinstance(code, int) else 400, str(page.get("error_message") or ""), series_id)
    return page


def _pages(stream: IO[bytes], label: str) -> Iterator[Any]:
    """Decoded JSON documents: one per line (NDJSON), or one document over several lines."""
    first = True
    for line in stream:
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if not first:
                raise PermanentError(f"{label}: a line is not JSON: {exc}") from None
            try:  # a pretty-printed single answer
                yield orjson.loads(line + stream.read())
            except orjson.JSONDecodeError as exc2:
                raise PermanentError(f"{label}: not a FRED JSON answer: {exc2}") from None
            return
        first = False


def _date(value: Any, what: str, label: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise PermanentError(f"{label}: {what} {value!r} is not a YYYY-MM-DD date") from None


def parse_value(value: Any, label: str) -> float | None:
    """FRED values are strings; "." means no value (NULL, never 0).

    Raises:
        PermanentError: anything else that is not a decimal number.
    """
    if value == MISSING:
        return None
    if not isinstance(value, str) or not NUMBER_RE.match(value):
        raise PermanentError(f"{label}: value {value!r} is neither a number nor FRED's '.' for missing")
    return float(value)


def parse_answers(stream: IO[bytes], part: Part) -> Iterator[Record]:
    """Observation records from a part's FRED answers (NDJSON, or one plain FRED JSON body).

    Vintage-date answers are passed over. In a real-time window that continues another (a later
    window of the part, or any window of an incremental part), rows still showing the window's first
    day as ``realtime_start`` are values already valid then, stored before, and are dropped.

    Raises:
        PermanentError: not a FRED observations answer, an error body, a bad date or value, or fewer
            observations than FRED's ``count`` says (a truncated payload).
        TransientError: an error body of a 429 or a 5xx.
    """
    sid = str(part.params["series_id"])
    label = f"FRED series {sid} ({part.key})"
    window_start = part.params.get("realtime_start")
    after = part.params.get("after")
    seen = expected = 0
    for page in _pages(stream, label):
        page = _checked(page, label=label, series_id=sid)
        if "vintage_dates" in page and "observations" not in page:
            if not isinstance(page["vintage_dates"], list):
                raise PermanentError(f"{label}: 'vintage_dates' is not a list")
            continue
        observations = page.get("observations")
        if not isinstance(observations, list):
            keys = ", ".join(sorted(page)[:8])
            raise PermanentError(f"{label}: not a FRED observations answer (no 'observations' list; keys: {keys})")
        if not page.get("offset"):  # a new request starts: the one before must have been complete
            if seen != expected:
                raise PermanentError(f"{label}: {seen} observations where FRED's count says {expected}")
            count = page.get("count", len(observations))
            seen, expected = 0, count if isinstance(count, int) else len(observations)
        seen += len(observations)
        lo = page.get("realtime_start")
        drop_through = lo if window_start is not None and (lo != window_start or after is not None) else None
        for i, obs in enumerate(observations):
            where = f"{label} observation {seen - len(observations) + i}"
            if not isinstance(obs, dict):
                raise PermanentError(f"{where}: not an object")
            start = obs.get("realtime_start")
            if drop_through is not None and isinstance(start, str) and start <= drop_through:
                continue
            yield {
                "series_id": sid,
                "date": _date(obs.get("date"), "date", where),
                "realtime_start": _date(start, "realtime_start", where),
                "realtime_end": _date(obs.get("realtime_end"), "realtime_end", where),
                "value": parse_value(obs.get("value"), where),
            }
    if seen != expected:
        raise PermanentError(f"{label}: {seen} observations where FRED's count says {expected} (truncated?)")
