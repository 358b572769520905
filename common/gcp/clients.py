"""Lazily created, cached Google Cloud clients: the only module that imports them.

Each accessor imports its client library on first call, so a function that never publishes never
pays for importing Pub/Sub (about 0.5 s of cold start). With an emulator host configured, the
client talks to it over an insecure channel: ``CloudTasksClient(client_options=...)`` would open
TLS and fail against a local server (see docs/google-quirks.md).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from common.settings import settings

if TYPE_CHECKING:  # pragma: no cover - typing only
    from google.cloud import firestore as _firestore
    from google.cloud import pubsub_v1, scheduler_v1, secretmanager, tasks_v2  # type: ignore[attr-defined]

_lock = threading.Lock()
#: Seconds the publisher waits to fill a batch (see :func:`publisher`).
PUBLISH_BATCH_LATENCY = 0.001


def _emulator_env(variable: str, host: str | None) -> None:
    """Google's clients read emulator hosts from the environment only: copy the setting there."""
    if host:
        import os

        os.environ.setdefault(variable, host)


def _anonymous() -> Any:
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


@lru_cache(maxsize=1)
def firestore() -> _firestore.Client:
    """The Firestore client (the emulator when ``FIRESTORE_EMULATOR_HOST`` is set)."""
    with _lock:
        from google.cloud import firestore as fs

        s = settings()
        if s.firestore_emulator_host:
            _emulator_env("FIRESTORE_EMULATOR_HOST", s.firestore_emulator_host)
            return fs.Client(project=s.project, credentials=_anonymous())
        return fs.Client(project=s.project)


@lru_cache(maxsize=1)
def publisher() -> pubsub_v1.PublisherClient:
    """The Pub/Sub publisher (the emulator when ``PUBSUB_EMULATOR_HOST`` is set), with message ordering on:
    ``common.gcp.pubsub`` gives each job's events the job id as ordering key.

    Batches wait 1 ms, not the default 10: with ordering each key gets its own batch, and a job publishes
    one event at a time and waits for it, so a longer wait never batches anything; it only added 10 ms to
    every publish and about 1 ms of CPU (timer and commit threads).
    """
    with _lock:
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]

        _emulator_env("PUBSUB_EMULATOR_HOST", settings().pubsub_emulator_host)
        return pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_latency=PUBLISH_BATCH_LATENCY),
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
        )


@lru_cache(maxsize=1)
def subscriber() -> pubsub_v1.SubscriberClient:
    """The Pub/Sub subscriber, for admin work (subscriptions, dead letters)."""
    with _lock:
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]

        _emulator_env("PUBSUB_EMULATOR_HOST", settings().pubsub_emulator_host)
        return pubsub_v1.SubscriberClient()


def tasks_client_for(host: str | None) -> tasks_v2.CloudTasksClient:
    """A Cloud Tasks client; with ``host`` ("127.0.0.1:PORT") it talks plaintext gRPC to an emulator."""
    from google.cloud import tasks_v2

    if not host:
        return tasks_v2.CloudTasksClient()
    import grpc
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    channel = grpc.insecure_channel(host)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


def scheduler_client_for(host: str | None) -> scheduler_v1.CloudSchedulerClient:
    """A Cloud Scheduler client; with ``host`` it talks plaintext gRPC to an emulator."""
    from google.cloud import scheduler_v1

    if not host:
        return scheduler_v1.CloudSchedulerClient()
    import grpc
    from google.cloud.scheduler_v1.services.cloud_scheduler.transports import CloudSchedulerGrpcTransport

    channel = grpc.insecure_channel(host)
    return scheduler_v1.CloudSchedulerClient(transport=CloudSchedulerGrpcTransport(channel=channel))


@lru_cache(maxsize=1)
def tasks() -> tasks_v2.CloudTasksClient:
    """The Cloud Tasks client (the project's emulator when ``CLOUD_TASKS_EMULATOR_HOST`` is set)."""
    with _lock:
        return tasks_client_for(settings().tasks_emulator_host)


@lru_cache(maxsize=1)
def scheduler() -> scheduler_v1.CloudSchedulerClient:
    """The Cloud Scheduler client (the project's emulator when ``CLOUD_SCHEDULER_EMULATOR_HOST`` is set)."""
    with _lock:
        return scheduler_client_for(settings().scheduler_emulator_host)


@lru_cache(maxsize=1)
def secret_manager() -> secretmanager.SecretManagerServiceClient:
    """The Secret Manager client; with ``TRIBUTARY_SECRET_MANAGER_EMULATOR_HOST`` it talks plaintext gRPC there.

    Google ships no Secret Manager emulator: the host setting exists for the tests' fake
    (``tests/fakes/secretmanager.py``).
    """
    with _lock:
        from google.cloud import secretmanager

        host = settings().secret_manager_emulator_host
        if not host:
            return secretmanager.SecretManagerServiceClient()
        import grpc
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport,
        )

        channel = grpc.insecure_channel(host)
        return secretmanager.SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channel))


@lru_cache(maxsize=1)
def storage() -> Any:
    """The Cloud Storage client, for gs:// outputs.

    With ``STORAGE_EMULATOR_HOST`` set (a URL, scheme included) the client library itself sends every
    request there with anonymous credentials; Google ships no emulator, ``tests/fakes/gcs.py`` is one.
    """
    with _lock:
        from google.cloud import storage as gcs  # type: ignore[attr-defined]

        return gcs.Client(project=settings().project)


def bounded_call() -> dict[str, Any]:
    """``retry`` and ``timeout`` keyword arguments that end a Google call, retries included, after
    ``TRIBUTARY_CALL_DEADLINE`` seconds (the clients' own defaults retry an unreachable service for 60-300 s)."""
    return _bounded(settings().call_deadline)


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
    for fn in (firestore, publisher, subscriber, tasks, scheduler, secret_manager, storage):
        fn.cache_clear()
