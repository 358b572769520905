"""World Bank answers read: the output schema, ``[meta, rows]`` pages, in-band errors and the pure parse."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import IO, Any

import orjson

from common.core.errors import PermanentError, TransientError
from common.sources.base import Column, Record
from common.sources.worldbank.params import TRANSIENT_ERROR_IDS

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


def decode_page(body: bytes, label: str) -> Any:
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
