"""Dead letters in Firestore: ``dead_events/{message_id}``, the events the status function could never read.

It records them and acks, so Pub/Sub does not redeliver them forever; ``common.ops.dlq`` lists and replays them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime

from common.gcp.firestore.codec import as_text
from common.gcp.firestore.query import bounded_call, db
from common.gcp.names import DEAD_EVENTS


@dataclass(frozen=True)
class StoredLetter:
    id: str
    reason: str
    data: bytes
    received_at: str


def record(message_id: str, raw: bytes, reason: str, attributes: dict[str, str] | None = None) -> None:
    """Keep an unreadable event (idempotent: the Pub/Sub message id names it)."""
    doc = db().collection(DEAD_EVENTS).document(message_id or "unknown")
    doc.set(
        {
            "reason": reason,
            "data": base64.b64encode(raw).decode(),
            "attributes": attributes or {},
            "received_at": datetime.now(UTC),
        },
        **bounded_call(),
    )


def stored(limit: int) -> list[StoredLetter]:
    """Up to ``limit`` kept events."""
    out = []
    for doc in db().collection(DEAD_EVENTS).limit(limit).stream(**bounded_call()):
        v = doc.to_dict() or {}
        out.append(
            StoredLetter(
                id=doc.id,
                reason=v.get("reason", ""),
                data=base64.b64decode(v.get("data", "")),
                received_at=as_text(v.get("received_at")) or "",
            )
        )
    return out


def delete(letter_id: str) -> None:
    """Forget a kept event (it applied)."""
    db().collection(DEAD_EVENTS).document(letter_id).delete(**bounded_call())
