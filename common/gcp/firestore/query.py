"""What every Firestore repository shares: the client, bounded calls and the count aggregation."""

from __future__ import annotations

from typing import Any

from common.gcp.clients import bounded_call, firestore

__all__ = ["bounded_call", "count", "db"]


def db() -> Any:
    """The Firestore client of the current settings."""
    return firestore()


def count(query: Any) -> int:
    """The result of a count aggregation over ``query`` (one result set holding one aggregate): counted by
    Firestore, nothing read document by document."""
    result: Any = query.count().get(**bounded_call())
    return int(result[0][0].value)
