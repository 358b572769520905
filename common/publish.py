"""Publishing job events to the ``ingest-events`` topic."""

from __future__ import annotations

from common.clients import publisher
from common.errors import TransientError
from common.events import Event
from common.settings import settings

PUBLISH_TIMEOUT = 30.0


def topic_path() -> str:
    s = settings()
    return f"projects/{s.project}/topics/{s.topic}"


def publish(event: Event) -> str:
    """Publish ``event`` and wait for the server's ack; returns the message id.

    Raises:
        TransientError: Pub/Sub did not accept the message in time (the task will be retried).
    """
    future = publisher().publish(
        topic_path(),
        event.to_bytes(),
        ce_id=event.id,
        ce_type=event.to_cloudevent()["type"],
        job_id=event.data.job_id,
        source=event.data.source,
    )
    try:
        return str(future.result(timeout=PUBLISH_TIMEOUT))
    except Exception as exc:  # the client raises several unrelated types here; all mean "not published"
        raise TransientError(f"could not publish {event.id}: {exc}") from exc
