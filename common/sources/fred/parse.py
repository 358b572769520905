"""FRED's answers read: error bodies mapped to errors, and observation records with their vintages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from typing import IO, Any

import orjson

from common.core.errors import (
    PermanentError,
    TransientError,
    UpstreamHTTPError,
    UpstreamPermanent,
    UpstreamTransient,
)
from common.sources.base import (
    Column,
    Part,
    Record,
    redact,
)
from common.sources.fred.params import SECRET, SECRET_ENV

#: A missing value in a FRED payload.
MISSING = "."

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
