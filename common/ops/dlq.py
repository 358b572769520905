"""Dead letters: status events that could not be applied, for an operator to inspect and re-apply.

Two places hold them:
- ``dead_events/{message_id}`` in Firestore: events the status function could never read (bad JSON,
  unknown schema). It records them and acks, so Pub/Sub does not redeliver them forever.
- the ``ingest-events-dead`` topic: events that kept failing transiently until Pub/Sub's
  ``max_delivery_attempts`` (set by deploy.sh). The pull subscription ``ingest-events-dead-pull``
  holds them.

``replay`` applies each again through the same code as the status function; what applies is removed.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from common.settings import settings

DEAD_EVENTS = "dead_events"
DEAD_SUBSCRIPTION = "ingest-events-dead-pull"


@dataclass
class DeadLetter:
    id: str
    where: str  # "firestore" | "pubsub"
    reason: str
    data: bytes
    received_at: str
    ack_id: str | None = None

    def summary(self) -> dict[str, Any]:
        preview = self.data[:120].decode("utf-8", errors="replace")
        return {
            "id": self.id,
            "where": self.where,
            "reason": self.reason,
            "received_at": self.received_at,
            "preview": preview,
        }


def record(message_id: str, raw: bytes, reason: str, attributes: dict[str, str] | None = None) -> None:
    """Keep an unreadable event (idempotent: the Pub/Sub message id names it)."""
    from common.gcp.clients import bounded_call, firestore

    doc = firestore().collection(DEAD_EVENTS).document(message_id or "unknown")
    doc.set(
        {
            "reason": reason,
            "data": base64.b64encode(raw).decode(),
            "attributes": attributes or {},
            "received_at": datetime.now(UTC).isoformat(),
        },
        **bounded_call(),
    )


def _subscription() -> str:
    return f"projects/{settings().project}/subscriptions/{DEAD_SUBSCRIPTION}"


def _firestore_letters(limit: int) -> list[DeadLetter]:
    from common.gcp.clients import bounded_call, firestore

    out = []
    for doc in firestore().collection(DEAD_EVENTS).limit(limit).stream(**bounded_call()):
        v = doc.to_dict() or {}
        out.append(
            DeadLetter(
                id=doc.id,
                where="firestore",
                reason=v.get("reason", ""),
                data=base64.b64decode(v.get("data", "")),
                received_at=v.get("received_at", ""),
            )
        )
    return out


def _pull(limit: int) -> list[DeadLetter]:
    """Messages of the dead-letter subscription, leased to this caller (ack or hand back with :func:`_release`)."""
    from google.api_core.exceptions import NotFound

    from common.gcp.clients import subscriber

    try:
        response = subscriber().pull(request={"subscription": _subscription(), "max_messages": limit}, timeout=10)
    except NotFound:
        return []
    return [
        DeadLetter(
            id=m.message.message_id,
            where="pubsub",
            reason="delivery attempts exhausted",
            data=m.message.data,
            received_at=m.message.publish_time.isoformat(),
            ack_id=m.ack_id,
        )
        for m in response.received_messages
    ]


def _release(letters: list[DeadLetter], *, ack: bool) -> None:
    """Acknowledge leased messages (gone for good), or hand them back at once (deadline 0)."""
    from common.gcp.clients import subscriber

    ack_ids = [d.ack_id for d in letters if d.ack_id]
    if not ack_ids:
        return
    if ack:
        subscriber().acknowledge(request={"subscription": _subscription(), "ack_ids": ack_ids})
    else:
        subscriber().modify_ack_deadline(
            request={"subscription": _subscription(), "ack_deadline_seconds": 0, "ack_ids": ack_ids}
        )


def list_dead(*, limit: int = 100) -> list[DeadLetter]:
    """Dead letters from Firestore and the dead-letter subscription (read-only: messages are handed back)."""
    leased = _pull(limit)
    _release(leased, ack=False)
    return _firestore_letters(limit) + leased


def replay(ids: set[str] | None = None) -> list[tuple[str, str]]:
    """Apply dead letters again (all, or those in ``ids``); returns ``(id, outcome)`` for each one tried.

    The subscription is pulled once: what applies is acknowledged, everything else handed back.
    """
    from common.core.events import Event
    from common.gcp.clients import bounded_call, firestore
    from common.gcp.firestore import record_event

    results = []
    applied: list[DeadLetter] = []
    leased = _pull(1000)
    try:
        for letter in _firestore_letters(1000) + leased:
            if ids is not None and letter.id not in ids:
                continue
            try:
                event = Event.from_bytes(letter.data)
            except ValueError as exc:
                results.append((letter.id, f"still unreadable: {exc}"))
                continue
            job = record_event(event)
            results.append((letter.id, f"applied: job {event.data.job_id} is {job.status.value if job else '?'}"))
            if letter.where == "firestore":
                firestore().collection(DEAD_EVENTS).document(letter.id).delete(**bounded_call())
            else:
                applied.append(letter)
    finally:
        _release(applied, ack=True)
        _release([d for d in leased if d not in applied], ack=False)
    return results
