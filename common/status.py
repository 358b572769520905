"""The status consumer: turn a Pub/Sub push (as a CloudEvent) into one Firestore transaction."""

from __future__ import annotations

import base64
import logging
from typing import Any

from common.events import Event
from common.jobs import Job

log = logging.getLogger("tributary.status")


class PoisonEvent(ValueError):
    """An event that can never be applied (malformed, unknown schema). It is logged and acked."""


def decode_pubsub(data: Any) -> Event:
    """The job event inside a ``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent's data.

    Raises:
        PoisonEvent: the message is not a readable Tributary job event.
    """
    try:
        message = data["message"]
        raw = base64.b64decode(message.get("data") or b"")
    except (KeyError, TypeError, ValueError) as exc:
        raise PoisonEvent(f"not a Pub/Sub message envelope: {exc!r}") from exc
    try:
        return Event.from_bytes(raw)
    except ValueError as exc:
        raise PoisonEvent(str(exc)) from exc


def handle_pubsub(data: Any) -> Job | None:
    """Apply the event in a Pub/Sub push. Poison events are kept in ``dead_events`` and acked (returns None).

    Raises:
        Exception: only for transient failures (Firestore unavailable), so Pub/Sub redelivers.
    """
    from common.store import record_event

    try:
        event = decode_pubsub(data)
    except PoisonEvent as exc:
        from common.dlq import record

        message = data.get("message", {}) if isinstance(data, dict) else {}
        raw = base64.b64decode(message.get("data") or b"") if isinstance(message, dict) else b""
        log.error("unreadable event %s kept in dead_events: %s", message.get("messageId"), exc)
        record(str(message.get("messageId") or ""), raw, str(exc), message.get("attributes"))
        return None
    job = record_event(event)
    log.info("applied %s -> %s", event.id, job.status if job else "?")
    return job
