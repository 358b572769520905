"""Lazily created, cached Google Cloud clients: the only module that imports them.

Each accessor imports its client library on first call, so a function that never publishes never
pays for importing Pub/Sub (about 0.5 s of cold start). Clients are built for a :class:`Settings`
(default: :func:`common.settings.settings`) and cached per Settings, so an operator command aimed at
another target gets clients of its own. With an emulator host configured, the client is given that host
explicitly, over an insecure channel: ``CloudTasksClient(client_options=...)`` would open TLS and fail
against a local server, and nothing here writes the host into ``os.environ`` (docs/google-quirks.md).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from common.settings import Settings, settings

if TYPE_CHECKING:  # pragma: no cover - typing only
    from google.cloud import firestore as _firestore
    from google.cloud import pubsub_v1, scheduler_v1, secretmanager, tasks_v2  # type: ignore[attr-defined]

_lock = threading.RLock()
#: Seconds the publisher waits to fill a batch (see :func:`publisher`).
PUBLISH_BATCH_LATENCY = 0.001
#: Distinct Settings whose clients are kept (the process's own, plus a few operator targets).
_PER_SETTINGS = 4
#: The deadline of the innermost :func:`call_deadline` block (None: ``call_deadline`` of the settings).
_deadline: ContextVar[float | None] = ContextVar("tributary_call_deadline", default=None)


def _anonymous() -> Any:
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


def _insecure_channel(host: str) -> Any:
    import grpc

    return grpc.insecure_channel(host)


def firestore(s: Settings | None = None) -> _firestore.Client:
    """The Firestore client (the emulator when ``FIRESTORE_EMULATOR_HOST`` is set)."""
    return _firestore_for(s or settings())


@lru_cache(maxsize=_PER_SETTINGS)
def _firestore_for(s: Settings) -> _firestore.Client:
    with _lock:
        from google.cloud import firestore as fs

        if not s.firestore_emulator_host:
            return fs.Client(project=s.project)
        client = fs.Client(project=s.project, credentials=_anonymous())
        # The client reads its emulator host from FIRESTORE_EMULATOR_HOST in __init__ and offers no argument for
        # it; it opens its (insecure) channel on first use from this attribute (docs/google-quirks.md).
        client._emulator_host = s.firestore_emulator_host
        return client


def _pubsub_kwargs(s: Settings, transport: Any) -> dict[str, Any]:
    """The emulator's host as an explicit plaintext transport (the stock client would read PUBSUB_EMULATOR_HOST)."""
    if not s.pubsub_emulator_host:
        return {}
    return {"transport": transport(channel=_insecure_channel(s.pubsub_emulator_host))}


def publisher(s: Settings | None = None) -> pubsub_v1.PublisherClient:
    """The Pub/Sub publisher (the emulator when ``PUBSUB_EMULATOR_HOST`` is set), with message ordering on:
    ``common.gcp.pubsub`` gives each job's events the job id as ordering key.

    Batches wait 1 ms, not the default 10: with ordering each key gets its own batch, and a job publishes
    one event at a time and waits for it, so a longer wait never batches anything; it only added 10 ms to
    every publish and about 1 ms of CPU (timer and commit threads).
    """
    return _publisher_for(s or settings())


@lru_cache(maxsize=_PER_SETTINGS)
def _publisher_for(s: Settings) -> pubsub_v1.PublisherClient:
    with _lock:
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

        return pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_latency=PUBLISH_BATCH_LATENCY),
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
            **_pubsub_kwargs(s, PublisherGrpcTransport),
        )


def subscriber(s: Settings | None = None) -> pubsub_v1.SubscriberClient:
    """The Pub/Sub subscriber, for admin work (subscriptions, dead letters)."""
    return _subscriber_for(s or settings())


@lru_cache(maxsize=_PER_SETTINGS)
def _subscriber_for(s: Settings) -> pubsub_v1.SubscriberClient:
    with _lock:
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        return pubsub_v1.SubscriberClient(**_pubsub_kwargs(s, SubscriberGrpcTransport))


def tasks_client_for(host: str | None) -> tasks_v2.CloudTasksClient:
    """A Cloud Tasks client; with ``host`` ("127.0.0.1:PORT") it talks plaintext gRPC to an emulator."""
    from google.cloud import tasks_v2

    if not host:
        return tasks_v2.CloudTasksClient()
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=_insecure_channel(host)))


def scheduler_client_for(host: str | None) -> scheduler_v1.CloudSchedulerClient:
    """A Cloud Scheduler client; with ``host`` it talks plaintext gRPC to an emulator."""
    from google.cloud import scheduler_v1

    if not host:
        return scheduler_v1.CloudSchedulerClient()
    from google.cloud.scheduler_v1.services.cloud_scheduler.transports import CloudSchedulerGrpcTransport

    return scheduler_v1.CloudSchedulerClient(transport=CloudSchedulerGrpcTransport(channel=_insecure_channel(host)))


def tasks(s: Settings | None = None) -> tasks_v2.CloudTasksClient:
    """The Cloud Tasks client (the project's emulator when ``CLOUD_TASKS_EMULATOR_HOST`` is set)."""
    return _tasks_for((s or settings()).tasks_emulator_host)


@lru_cache(maxsize=_PER_SETTINGS)
def _tasks_for(host: str | None) -> tasks_v2.CloudTasksClient:
    with _lock:
        return tasks_client_for(host)


def scheduler(s: Settings | None = None) -> scheduler_v1.CloudSchedulerClient:
    """The Cloud Scheduler client (the project's emulator when ``CLOUD_SCHEDULER_EMULATOR_HOST`` is set)."""
    return _scheduler_for((s or settings()).scheduler_emulator_host)


@lru_cache(maxsize=_PER_SETTINGS)
def _scheduler_for(host: str | None) -> scheduler_v1.CloudSchedulerClient:
    with _lock:
        return scheduler_client_for(host)


def secret_manager(s: Settings | None = None) -> secretmanager.SecretManagerServiceClient:
    """The Secret Manager client; with ``TRIBUTARY_SECRET_MANAGER_EMULATOR_HOST`` it talks plaintext gRPC there.

    Google ships no Secret Manager emulator: the host setting exists for the tests' fake
    (``tests/fakes/secretmanager.py``).
    """
    return _secret_manager_for((s or settings()).secret_manager_emulator_host)


@lru_cache(maxsize=_PER_SETTINGS)
def _secret_manager_for(host: str | None) -> secretmanager.SecretManagerServiceClient:
    with _lock:
        from google.cloud import secretmanager

        if not host:
            return secretmanager.SecretManagerServiceClient()
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport,
        )

        transport = SecretManagerServiceGrpcTransport(channel=_insecure_channel(host))
        return secretmanager.SecretManagerServiceClient(transport=transport)


def storage(s: Settings | None = None) -> Any:
    """The Cloud Storage client, for gs:// outputs.

    With ``STORAGE_EMULATOR_HOST`` set (a URL, scheme included) the client library itself sends every
    request there with anonymous credentials; Google ships no emulator, ``tests/fakes/gcs.py`` is one.
    """
    return _storage_for((s or settings()).project)


@lru_cache(maxsize=_PER_SETTINGS)
def _storage_for(project: str) -> Any:
    with _lock:
        from google.cloud import storage as gcs  # type: ignore[attr-defined]

        return gcs.Client(project=project)


def bounded_call() -> dict[str, Any]:
    """``retry`` and ``timeout`` keyword arguments that end a Google call, retries included, after
    ``TRIBUTARY_CALL_DEADLINE`` seconds (the clients' own defaults retry an unreachable service for 60-300 s),
    or after the deadline of the enclosing :func:`call_deadline` block."""
    return _bounded(_deadline.get() or settings().call_deadline)


@contextlib.contextmanager
def call_deadline(seconds: float) -> Iterator[None]:
    """Bound the Google calls made in this block, in this thread, by ``seconds`` instead of ``call_deadline``
    (the api's reads use the shorter ``api_read_deadline``, so an outage frees its threads sooner).

    A thread pool started inside the block keeps the default: context variables do not cross into its threads.
    """
    token = _deadline.set(seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


@lru_cache(maxsize=4)
def _bounded(deadline: float) -> dict[str, Any]:
    from google.api_core import exceptions as gexc
    from google.api_core.retry import Retry, if_exception_type

    # What Firestore's generated defaults retry (Secret Manager's retry a subset of these).
    transient = if_exception_type(
        gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.ResourceExhausted
    )
    retry = Retry(predicate=transient, initial=0.1, maximum=2.0, multiplier=2.0, timeout=deadline)
    return {"retry": retry, "timeout": deadline}


def reset_clients() -> None:
    """Drop every cached client (tests point them at fresh emulators)."""
    for cached in (
        _firestore_for,
        _publisher_for,
        _subscriber_for,
        _tasks_for,
        _scheduler_for,
        _secret_manager_for,
        _storage_for,
    ):
        cached.cache_clear()


class BackendNotReady(Exception):
    """Firestore refused a query it cannot serve yet (``FAILED_PRECONDITION``): a composite index is missing
    or still building. Not the caller's fault, and it passes once the index is built."""


def unavailable_cause(exc: BaseException) -> BaseException | None:
    """What made a Google call fail for want of an answer (the service down, retries or the deadline run
    out, a query whose index is missing or building), or None for any other error, which is then a bug
    to propagate."""
    if not type(exc).__module__.startswith("google."):
        return None
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.FailedPrecondition):
        return BackendNotReady(
            "Firestore refused the query: an index it needs is missing or still building (deploy.sh creates "
            f"them; `gcloud firestore indexes composite list` shows their state): {exc.message}"
        )
    if not isinstance(exc, gexc.RetryError | gexc.ServiceUnavailable | gexc.DeadlineExceeded):
        return None
    return getattr(exc, "cause", None) or exc
