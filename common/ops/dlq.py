"""Dead letters: status events that could not be applied, for an operator to inspect and re-apply.

Two places hold them:
- ``dead_events/{message_id}`` in Firestore (``common.gcp.firestore.deadletters``; the ``dead_events`` table
  on the embedded profile): events the status
  function could never read (bad JSON, unknown schema). It records them and acks, so Pub/Sub does not
  redeliver them forever.
- the dead-letter topic (``<topic>-dead``): events that kept failing transiently until Pub/Sub's
  ``max_delivery_attempts`` (set by deploy.sh). Its pull subscription (``<topic>-dead-pull``,
  ``common.gcp.names.dead_subscription_path``) holds them.

``replay`` applies each again through the status rule (``common.runtime.status.replay``); what applies is
removed.
Both work on the current settings' target: the CLI installs the one it talks to (``common.ops.target``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.gcp import names
from common.gcp.clients import subscriber
from common.gcp.firestore.deadletters import record
from common.runtime import executors, status

#: ``record`` moved to ``common.gcp.firestore.deadletters`` (the status function writes dead letters).
__all__ = ["DeadLetter", "list_dead", "record", "replay"]


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


def _stored_letters(limit: int) -> list[DeadLetter]:
    """The dead letters kept by the state (Firestore's ``dead_events``, or SQLite's on the embedded profile)."""
    where = executors.chosen()[2]
    return [
        DeadLetter(id=d.id, where=where, reason=d.reason, data=d.data, received_at=d.received_at)
        for d in executors.state().dead_letters(limit)
    ]


def _pull(limit: int) -> list[DeadLetter]:
    """Messages of the dead-letter subscription, leased to this caller (ack or hand back with :func:`_release`)."""
    from google.api_core.exceptions import NotFound

    if executors.chosen()[1] != "pubsub":  # an in-process bus keeps what it cannot apply as stored letters
        return []
    try:
        request = {"subscription": names.dead_subscription_path(), "max_messages": limit}
        response = subscriber().pull(request=request, timeout=10)
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
    ack_ids = [d.ack_id for d in letters if d.ack_id]
    if not ack_ids:
        return
    if ack:
        subscriber().acknowledge(request={"subscription": names.dead_subscription_path(), "ack_ids": ack_ids})
    else:
        subscriber().modify_ack_deadline(
            request={"subscription": names.dead_subscription_path(), "ack_deadline_seconds": 0, "ack_ids": ack_ids}
        )


def list_dead(*, limit: int = 100) -> list[DeadLetter]:
    """Dead letters from Firestore and the dead-letter subscription (read-only: messages are handed back)."""
    leased = _pull(limit)
    _release(leased, ack=False)
    return _stored_letters(limit) + leased


def replay(ids: set[str] | None = None) -> list[tuple[str, str]]:
    """Apply dead letters again (all, or those in ``ids``); returns ``(id, outcome)`` for each one tried.

    The subscription is pulled once: what applies is acknowledged, everything else handed back.
    """
    results = []
    applied: list[DeadLetter] = []
    leased = _pull(1000)
    try:
        for letter in _stored_letters(1000) + leased:
            if ids is not None and letter.id not in ids:
                continue
            job, outcome = status.replay(letter.data)
            results.append((letter.id, outcome))
            if job is None:
                continue
            if letter.where != "pubsub":
                executors.state().delete_dead_letter(letter.id)
            else:
                applied.append(letter)
    finally:
        _release(applied, ack=True)
        _release([d for d in leased if d not in applied], ack=False)
    return results
