"""ReliefWeb's answers read: the fields asked for, the output schemas, page checks and the pure parse."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

import orjson

from common.core.errors import PermanentError, TransientError
from common.sources.base import Column, Record
from common.sources.reliefweb.params import utc

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


def int_field(value: Any, field: str, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PermanentError(f"{label}: {field} is {value!r}, not an integer")
    return value


def decode_page(body: bytes, label: str) -> dict[str, Any]:
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
        return utc(datetime.fromisoformat(str(value)))
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
