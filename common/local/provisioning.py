"""The resources the local stack creates in its emulators: topics, subscriptions and queues."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Literal

from common.core.tasks import QueueConfig
from common.gcp import clients, names
from common.gcp.pubsub import status_push_subscription
from common.gcp.tasks import ensure_queue
from common.sources import all_sources

#: ``local``: queues dispatch at :data:`LOCAL_RATE` and retry within seconds (the upstreams are replayed or
#: few calls away, and a sample job must not wait out a production pacing meant for a daily quota);
#: ``declared``: each source's production limits, as ``deploy.sh`` sets them.
QueueRates = Literal["local", "declared"]
#: Dispatches per second of a local queue (no source declares less than this locally).
LOCAL_RATE = 50.0
#: Retry backoff bounds of a local queue, in seconds (a declared shorter one is kept).
LOCAL_MIN_BACKOFF, LOCAL_MAX_BACKOFF = 0.5, 5.0


def local_queue(queue: QueueConfig) -> QueueConfig:
    """``queue`` at local-friendly rates: at least :data:`LOCAL_RATE` dispatches a second and backoffs of
    seconds; concurrency, attempts and the dispatch deadline stay as declared."""
    return dataclasses.replace(
        queue,
        max_dispatches_per_second=max(queue.max_dispatches_per_second, LOCAL_RATE),
        min_backoff=min(queue.min_backoff, LOCAL_MIN_BACKOFF),
        max_backoff=min(queue.max_backoff, LOCAL_MAX_BACKOFF),
    )


def load_subscription(topic: str, load_url: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The load function's push subscription: as the status one (no dead-letter policy on the emulator: the
    push target keeps it, see ``common.local.deliveries``), on the same topic."""
    if not load_url:
        return []
    path = names.subscription_path(names.LOAD_SUBSCRIPTION)
    return [(path, status_push_subscription(topic, names.push_endpoint(load_url)))]


def provision(status_url: str, load_url: str | None = None, queue_rates: QueueRates = "local") -> None:
    """Create, for the current settings, the events topic and its dead-letter topic, the push subscription
    to the status function at ``status_url`` (and to the load function at ``load_url``), the dead letters'
    pull subscription, and every source's queue (at ``queue_rates``)."""
    from google.api_core.exceptions import AlreadyExists

    topic, dead = names.topic_path(), names.dead_topic_path()
    pub, sub = clients.publisher(), clients.subscriber()
    for t in (topic, dead):
        with contextlib.suppress(AlreadyExists):
            pub.create_topic(name=t)
    for name, request in (
        (names.status_subscription_path(), status_push_subscription(topic, names.push_endpoint(status_url))),
        (names.dead_subscription_path(), {"topic": dead}),
        *load_subscription(topic, load_url),
    ):
        with contextlib.suppress(AlreadyExists):
            sub.create_subscription(request={"name": name, **request})
    for source in all_sources():
        ensure_queue(source, local_queue(source.queue) if queue_rates == "local" else None)
