"""The status consumer: turn a Pub/Sub push (as a CloudEvent) into one Firestore transaction."""

from __future__ import annotations

import base64
import logging
from collections import Counter
from typing import Any

from common.core.errors import TransientError
from common.core.events import Event
from common.core.jobs import Job
from common.runtime import executors
from common.runtime.logs import bind_job

log = logging.getLogger("tributary.status")

#: Events ignored because they name a job that was never created, since this instance started.
IGNORED_UNKNOWN = Counter[str]()


class PoisonEvent(ValueError):
    """An event that can never be applied (malformed, unknown schema). It is kept as a dead letter and acked."""

    def __init__(self, reason: str, *, message_id: str = "", raw: bytes = b"", attributes: Any = None) -> None:
        super().__init__(reason)
        self.message_id, self.raw, self.attributes = message_id, raw, attributes or {}


def decode_pubsub(data: Any) -> Event:
    """The job event inside a ``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent's data.

    Raises:
        PoisonEvent: the message is not a readable Tributary job event (it carries what could be read).
    """
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict):
        raise PoisonEvent("not a Pub/Sub message envelope: no 'message' object")
    message_id, attributes = str(message.get("messageId") or ""), message.get("attributes")
    try:
        raw = base64.b64decode(message.get("data") or b"", validate=True)
    except (TypeError, ValueError) as exc:
        raise PoisonEvent(f"message data is not base64: {exc}", message_id=message_id, attributes=attributes) from exc
    try:
        return Event.from_bytes(raw)
    except ValueError as exc:
        raise PoisonEvent(str(exc), message_id=message_id, raw=raw, attributes=attributes) from exc


def handle_pubsub(data: Any) -> Job | None:
    """Apply the event in a Pub/Sub push. Poison events are kept in ``dead_events`` and acked (returns None);
    an event of a job that was never created is ignored, logged at WARNING and counted (returns None).

    Raises:
        Exception: only for transient failures (Firestore unavailable), so Pub/Sub redelivers.
    """
    try:
        event = decode_pubsub(data)
    except PoisonEvent as exc:
        log.error("unreadable event %s kept in dead_events: %s", exc.message_id or "?", exc)
        executors.state().record_dead_letter(exc.message_id, exc.raw, str(exc), exc.attributes)
        return None
    return apply(event)


def apply(event: Event) -> Job | None:
    """Apply one decoded event to the state (once: its marker); None for an event of a job never created.

    Raises:
        Exception: only for transient failures (the state unavailable), so the bus delivers it again.
    """
    bind_job(job_id=event.data.job_id, source=event.data.source, attempt=event.data.attempt)
    job = executors.state().record_event(event)
    if job is None:
        # Acked, not retried: no redelivery can make the job exist. Counted per source for the log-based metric.
        IGNORED_UNKNOWN[event.data.source] += 1
        log.warning(
            "ignored event %s: job %s of %s was never created (unknown_job_events=%d)",
            event.id,
            event.data.job_id,
            event.data.source,
            sum(IGNORED_UNKNOWN.values()),
        )
        return None
    log.info("applied %s -> %s", event.id, job.status)
    return job


def replay(raw: bytes) -> tuple[Job | None, str]:
    """Apply a dead letter's body again through the status rule (``tributary dlq replay``, the console's Replay).

    Returns the job, None when nothing applied (the body is still unreadable, or its job was never created), and
    the outcome in words.
    """
    try:
        event = Event.from_bytes(raw)
    except ValueError as exc:
        return None, f"still unreadable: {exc}"
    job = apply(event)
    if job is None:
        return None, f"job {event.data.job_id} does not exist"
    return job, f"applied: job {job.job_id} is {job.status.value}"


def apply_bytes(body: bytes, message_id: str) -> Job | None:
    """The in-process bus's consumer: the same rule as :func:`handle_pubsub` for one CloudEvent's bytes. An
    unreadable event, or one whose application fails for a reason other than a transient one, is kept as a
    dead letter (``tributary dlq``) rather than blocking the events behind it.

    Raises:
        TransientError: the state is unavailable (the event stays in the outbox).
    """
    try:
        event = Event.from_bytes(body)
    except ValueError as exc:
        log.error("unreadable event %s kept in dead_events: %s", message_id, exc)
        executors.state().record_dead_letter(message_id, body, str(exc), {})
        return None
    try:
        return apply(event)
    except TransientError:
        raise
    except Exception as exc:  # a bug must not stop every later event: kept, and replayable once fixed
        log.exception("event %s could not be applied; kept in dead_events", message_id)
        executors.state().record_dead_letter(message_id, body, f"{type(exc).__name__}: {exc}", {})
        return None
