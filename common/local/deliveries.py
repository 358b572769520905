"""The dead-letter policy of the local push subscriptions, kept by their push target instead of the emulator.

``deploy.sh`` creates ``status-push`` and ``load-push`` with a dead-letter topic and
:data:`~common.gcp.pubsub.MAX_DELIVERY_ATTEMPTS`: a push answered non-2xx that many times is forwarded to
``<topic>-dead`` and delivered no more. The Pub/Sub emulator cannot do that for an ordered subscription: it stops
pushing after the attempts but never forwards the message, and holds its ordering key for good; nor does it send
``deliveryAttempt`` (docs/google-quirks.md). Without a policy it redelivers a failing push about once a second,
forever, and the function logs a traceback each time.

:func:`bounded` wraps a CloudEvent function so that the local stack behaves as deployed: it counts the failed
deliveries of each message id, and once a delivery fails for the last allowed time, it publishes the message to
the dead-letter topic with the attributes Pub/Sub adds (``CloudPubSubDeadLetterSource*``) and acks the push.
``tributary dlq list`` then shows it, and ``tributary dlq replay`` applies it, as on a deployment. The counts
live in the function's process (a restart starts them again) and only failures the function raises are
counted; a push that times out or finds the function down is still redelivered by the emulator.
"""

from __future__ import annotations

import base64
import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.gcp import names
from common.gcp.clients import publisher
from common.gcp.pubsub import MAX_DELIVERY_ATTEMPTS, PUBLISH_TIMEOUT
from common.settings import settings

log = logging.getLogger("tributary.local.deliveries")

#: What ``tributary dev up`` serves to Pub/Sub's pushes: the status and load functions, each wrapped by :func:`bounded`.
PUSHED = Path(__file__).resolve().with_name("pushed.py")
#: Message ids whose failures are remembered at most (the oldest are forgotten first).
REMEMBERED = 10_000

CloudEventFunction = Callable[[Any], None]


class Deliveries:
    """Failed deliveries per message id, in memory and bounded (thread-safe: functions-framework is threaded)."""

    def __init__(self, remember: int = REMEMBERED) -> None:
        self._failed: OrderedDict[str, int] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()

    def failed(self, message_id: str) -> int:
        """Count one more failed delivery of ``message_id``; returns how many failed so far."""
        with self._lock:
            count = self._failed.pop(message_id, 0) + 1
            self._failed[message_id] = count
            while len(self._failed) > self._remember:
                self._failed.popitem(last=False)
            return count

    def forget(self, message_id: str) -> None:
        """The message was acked (applied or dead-lettered): it will not come back."""
        with self._lock:
            self._failed.pop(message_id, None)


def dead_letter(message: dict[str, Any], subscription: str, attempts: int) -> str:
    """Publish a pushed ``message`` to the dead-letter topic as Pub/Sub forwards one; returns its new message id.

    Raises:
        Exception: the publish failed (the client's own exception types): the push should fail, and be
            delivered again.
    """
    raw = base64.b64decode(message.get("data") or b"")
    attributes = {str(k): str(v) for k, v in (message.get("attributes") or {}).items()}
    attributes.update(
        CloudPubSubDeadLetterSourceSubscription=subscription,
        CloudPubSubDeadLetterSourceSubscriptionProject=settings().project,
        CloudPubSubDeadLetterSourceDeliveryCount=str(attempts),
        CloudPubSubDeadLetterSourceTopicPublishTime=str(message.get("publishTime") or ""),
    )
    future = publisher().publish(names.dead_topic_path(), raw, **attributes)
    return str(future.result(timeout=PUBLISH_TIMEOUT))


def bounded(
    function: CloudEventFunction, subscription: str, *, max_attempts: int = MAX_DELIVERY_ATTEMPTS
) -> CloudEventFunction:
    """``function`` behind the dead-letter policy of ``subscription`` (see the module docstring).

    A delivery that fails before the last attempt fails as before (the emulator pushes it again); the last one
    is forwarded to the dead-letter topic and acked. A push without a message id is never forwarded.
    """
    deliveries = Deliveries()

    @functools.wraps(function)
    def push(cloud_event: Any) -> None:
        data = cloud_event.data if isinstance(cloud_event.data, dict) else {}
        message: dict[str, Any] = data["message"] if isinstance(data.get("message"), dict) else {}
        message_id = str(message.get("messageId") or message.get("message_id") or "")
        try:
            function(cloud_event)
        except Exception as exc:  # whatever made this delivery fail: the web framework answers it as before
            attempts = deliveries.failed(message_id) if message_id else 0
            if attempts < max_attempts:
                raise
            try:
                dead_id = dead_letter(message, subscription, attempts)
            except Exception:
                log.exception("could not forward message %s of %s to the dead-letter topic", message_id, subscription)
                raise exc from None
            log.error(
                "message %s of %s failed %d deliveries (%s: %s); forwarded to %s as %s and acked",
                message_id,
                subscription,
                attempts,
                type(exc).__name__,
                exc,
                names.dead_topic_id(),
                dead_id,
            )
        deliveries.forget(message_id)

    return push
