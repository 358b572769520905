"""Documents to and from Firestore: datetimes as Timestamps, TTL expiry, and reading older ISO strings.

Firestore stores a Python ``datetime`` as a Timestamp (the only type a TTL policy expires) and reads it
back as ``DatetimeWithNanoseconds``; :func:`from_firestore` turns it into a plain aware UTC datetime.
Documents written before this module kept ISO strings; they still load (pydantic parses them, and
:func:`as_datetime` does for raw dicts). Firestore orders values by type before value (Timestamps
before strings, docs/google-quirks.md), so a query ordered by a time field that may hold both is run once
per type and merged (:func:`newest_first`), until the strings have aged out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from common.gcp.firestore.query import bounded_call
from common.gcp.names import EVENTS, JOBS, PARTS
from common.settings import settings

#: The field a TTL policy expires documents on (``deploy.sh`` enables it on jobs and event markers).
EXPIRE_AT = "expire_at"
#: The collection groups whose documents carry ``expire_at``: jobs, their event markers and their parts (a TTL
#: deletion, like any, leaves a document's subcollections behind, so each level expires on its own).
TTL_COLLECTION_GROUPS = (JOBS, EVENTS, PARTS)
#: The lowest Timestamp: ``field >= EPOCH`` selects the documents whose field is a Timestamp.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive ones are taken as UTC), which Firestore stores as a Timestamp."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def expire_at(start: datetime, days: int | None = None) -> datetime:
    """When a document written at ``start`` expires: ``days`` later (default ``TRIBUTARY_RETENTION_DAYS``)."""
    return timestamp(start) + timedelta(days=settings().retention_days if days is None else days)


def to_firestore(model: BaseModel, *, expires_from: datetime | None = None, **dump: Any) -> dict[str, Any]:
    """``model`` as a document: its JSON form, with its datetime fields as Timestamps, and ``expire_at``
    (:func:`expire_at` of ``expires_from``) when given."""
    data: dict[str, Any] = model.model_dump(mode="json", **dump)
    for name in data:
        value = getattr(model, name, None)
        if isinstance(value, datetime):
            data[name] = timestamp(value)
    if expires_from is not None:
        data[EXPIRE_AT] = expire_at(expires_from)
    return data


def from_firestore(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """A stored document with its Timestamps (at any depth) as plain aware UTC datetimes; strings unchanged."""
    return {key: _plain(value) for key, value in (data or {}).items()}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return datetime.fromtimestamp(value.timestamp(), UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def as_datetime(value: Any) -> datetime | None:
    """A stored time, Timestamp or an earlier version's ISO string, as an aware UTC datetime (None stays None).

    Raises:
        ValueError: a string that is not an ISO 8601 time.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return timestamp(value)
    return timestamp(datetime.fromisoformat(str(value)))


def as_text(value: Any) -> str | None:
    """A stored time in the form earlier versions stored (and the API answered): ``datetime.isoformat()``."""
    if isinstance(value, datetime):
        return timestamp(value).isoformat()
    return value if value is None else str(value)


def newest_first(query: Any, field: str, limit: int) -> list[Any]:
    """Up to ``limit`` snapshots of ``query``, newest ``field`` first, whether it holds Timestamps or an
    earlier version's ISO strings: one query per type (a range on the ordered field, served by the same
    index), merged."""
    snaps: list[Any] = []
    for lowest in (EPOCH, ""):
        typed = _at_least(query, field, lowest)
        snaps += list(typed.order_by(field, direction="DESCENDING").limit(limit).stream(**bounded_call()))
    snaps.sort(key=lambda s: as_datetime((s.to_dict() or {}).get(field)) or EPOCH, reverse=True)
    return snaps[:limit]


def _at_least(query: Any, field: str, lowest: Any) -> Any:
    from google.cloud.firestore_v1.base_query import FieldFilter

    return query.where(filter=FieldFilter(field, ">=", lowest))
