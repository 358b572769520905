"""Batches in Firestore: ``batches/{batch_id}``, what one trigger asked and planned (the model is
``common.core.batches.Batch``; its progress is counted over ``jobs``, never stored here)."""

from __future__ import annotations

from typing import Any

from common.gcp.firestore.query import bounded_call, db
from common.gcp.names import BATCHES


def _ref(batch_id: str) -> Any:
    return db().collection(BATCHES).document(batch_id)


def create(batch_id: str, doc: dict[str, Any]) -> dict[str, Any] | None:
    """Write the batch unless it exists: None when written, else the stored document."""
    from google.api_core.exceptions import AlreadyExists, Conflict

    ref = _ref(batch_id)
    try:
        ref.create(doc, **bounded_call())
        return None
    except (AlreadyExists, Conflict):
        return dict(ref.get(**bounded_call()).to_dict() or {})


def put(batch_id: str, doc: dict[str, Any]) -> None:
    """Replace the batch document."""
    _ref(batch_id).set(doc, **bounded_call())


def get(batch_id: str) -> dict[str, Any] | None:
    """The batch document, or None."""
    snap = _ref(batch_id).get(**bounded_call())
    return dict(snap.to_dict() or {}) if snap.exists else None
