"""The resources the local stack creates in its emulators: topics, subscriptions and queues."""

from __future__ import annotations

import contextlib
from typing import Any

from common.gcp import clients, names
from common.gcp.pubsub import status_push_subscription
from common.gcp.tasks import ensure_queue
from common.sources import all_sources


def load_subscription(topic: str, load_url: str | None) -> list[tuple[str, dict[str, Any]]]:
    """The load function's push subscription: as the status one (no dead-letter policy locally, see
    ``status_push_subscription``), on the same topic."""
    if not load_url:
        return []
    path = names.subscription_path(names.LOAD_SUBSCRIPTION)
    return [(path, status_push_subscription(topic, names.push_endpoint(load_url)))]


def provision(status_url: str, load_url: str | None = None) -> None:
    """Create, for the current settings, the events topic and its dead-letter topic, the push subscription
    to the status function at ``status_url`` (and to the load function at ``load_url``), the dead letters'
    pull subscription, and every source's queue."""
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
        ensure_queue(source)
