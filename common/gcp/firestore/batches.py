"""Batches in Firestore: ``batches/{batch_id}``, what one trigger asked and planned (the model is
``common.core.batches.Batch``; its progress is counted over ``jobs``, never stored here)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from common.gcp.firestore.codec import from_firestore, timestamp
from common.gcp.firestore.query import bounded_call, db
from common.gcp.names import BATCHES


def _ref(batch_id: str) -> Any:
    return db().collection(BATCHES).document(batch_id)


def _stored(doc: dict[str, Any]) -> dict[str, Any]:
    """The batch as written: ``created_at`` as a Timestamp (the model's JSON form carries it as text)."""
    created = doc.get("created_at")
    return {**doc, "created_at": timestamp(datetime.fromisoformat(created))} if isinstance(created, str) else doc


def create(batch_id: str, doc: dict[str, Any]) -> dict[str, Any] | None:
    """Write the batch unless it exists: None when written, else the stored document."""
    from google.api_core.exceptions import AlreadyExists, Conflict

    ref = _ref(batch_id)
    try:
        ref.create(_stored(doc), **bounded_call())
        return None
    except (AlreadyExists, Conflict):
        return from_firestore(ref.get(**bounded_call()).to_dict())


def put(batch_id: str, doc: dict[str, Any]) -> None:
    """Replace the batch document."""
    _ref(batch_id).set(_stored(doc), **bounded_call())


def get(batch_id: str) -> dict[str, Any] | None:
    """The batch document, or None."""
    snap = _ref(batch_id).get(**bounded_call())
    return from_firestore(snap.to_dict()) if snap.exists else None
