"""Publishing job events to the events topic (``TRIBUTARY_TOPIC``, default ``ingest-events``), one ordering key per job.

Each event carries ``ordering_key=job_id``, and the ``status-push`` subscription is created with message
ordering (``common/local/stack.py``, ``deploy.sh``), so Pub/Sub pushes one job's events one after another
instead of at once: their Firestore transactions no longer contend on ``jobs/{id}``. Correctness never
depends on that order (``common.core.jobs.apply_event`` is order-independent); it is about contention.

With ordering on, the client *pauses* an ordering key after a publish to it fails: every later publish
with that key fails at once (``PublishToPausedOrderingKeyException``) until ``resume_publish`` is called.
:func:`publish` therefore resumes the key after any failure, so the task's retry (or another task of the
same job on this instance) can publish again, and tries once more before giving up.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from common.core.errors import TransientError
from common.core.events import TYPE_PREFIX, Event
from common.gcp import names
from common.gcp.clients import publisher

log = logging.getLogger("tributary.publish")

PUBLISH_TIMEOUT = 30.0
#: Publish attempts per event within one call (a paused key is resumed between them).
PUBLISH_ATTEMPTS = 2


#: The ``status-push`` subscription's ack deadline, seconds (the local stack and the deploy plan both use it).
ACK_DEADLINE = 60
#: Deliveries of one message before Pub/Sub forwards it to the dead-letter topic (Pub/Sub allows 5 to 100). The
#: status function acks poison events itself, so only outages and programming errors reach this. ``deploy.sh``
#: sets it on ``status-push`` and ``load-push``; the local stack keeps it in the push target
#: (``common.local.deliveries``), since the emulator loses dead letters of an ordered subscription.
MAX_DELIVERY_ATTEMPTS = 10
#: The push subscription delivers one job's events in order (the job id is the ordering key), so the status
#: function's transactions of one job do not contend. Pub/Sub fixes this when the subscription is created;
#: ``deploy.sh`` warns about an existing one without it.
MESSAGE_ORDERING = True


def topic_path() -> str:
    """The events topic (``names.topic_path``)."""
    return names.topic_path()


def status_push_subscription(topic: str, push_endpoint: str) -> dict[str, Any]:
    """The local ``status-push`` subscription (a ``create_subscription`` request, without its name).

    As ``deploy.sh`` creates it, with message ordering, but without a dead_letter_policy: on an ordered
    subscription the Pub/Sub emulator stops pushing a message after its attempts but never forwards it, and
    holds its ordering key for good (docs/google-quirks.md). The local push target keeps the policy instead
    (``common.local.deliveries``).
    """
    return {
        "topic": topic,
        "push_config": {"push_endpoint": push_endpoint},
        "ack_deadline_seconds": ACK_DEADLINE,
        "enable_message_ordering": MESSAGE_ORDERING,
    }


def publish(event: Event) -> str:
    """Publish ``event`` with its job id as ordering key and wait for the server's ack; returns the message id.

    Raises:
        TransientError: Pub/Sub did not accept the message (the task will be retried); the ordering key is
            left resumed, so that retry can publish.
    """
    topic, key = topic_path(), event.data.job_id
    client = publisher()
    body, ce_type = event.to_bytes(), TYPE_PREFIX + event.type.value
    attempt = 0
    while True:
        attempt += 1
        future = client.publish(
            topic, body, ordering_key=key, ce_id=event.id, ce_type=ce_type, job_id=key, source=event.data.source
        )
        try:
            return str(future.result(timeout=PUBLISH_TIMEOUT))
        except TimeoutError as exc:
            # Still in flight: with ordering the client retries transient errors without a deadline, and the key
            # is not paused. Publishing it again would only queue a copy behind it.
            raise TransientError(f"could not publish {event.id} within {PUBLISH_TIMEOUT:.0f} s") from exc
        except Exception as exc:  # the client raises several unrelated types here; all mean "not published"
            resume(topic, key)
            if attempt >= PUBLISH_ATTEMPTS:
                raise TransientError(f"could not publish {event.id}: {type(exc).__name__}: {exc}") from exc
            log.warning("publishing %s failed (%s: %s); key resumed, trying again", event.id, type(exc).__name__, exc)


def resume(topic: str, key: str) -> None:
    """Let the client publish with ``key`` again after a failure paused it (a no-op when it is not paused)."""
    with contextlib.suppress(RuntimeError):  # "Ordering key is not paused."
        publisher().resume_publish(topic, key)
