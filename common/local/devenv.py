"""The shell exports that point gcloud and Google's clients at the local emulators (``tributary dev env``)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping

#: gcloud against an endpoint override, offline: send no credentials at all (the ``auth/disable_credentials``
#: property). Without it every command stops at "You do not currently have an active account selected".
GCLOUD_NO_CREDENTIALS = {"CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true"}
#: gcloud settings that keep a command from asking questions or probing the GCE metadata server.
GCLOUD_QUIET = {"CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false"}


def _override(url: str) -> str:
    """An endpoint override as gcloud wants it: a URL ending in ``/`` (gcloud appends ``v2/projects/…``)."""
    return url.rstrip("/") + "/"


def emulator_exports(
    *,
    project: str,
    tasks_rest: str | None = None,
    scheduler_rest: str | None = None,
    pubsub: str | None = None,
    firestore: str | None = None,
    tasks_grpc: str | None = None,
    scheduler_grpc: str | None = None,
) -> dict[str, str]:
    """The environment that sends gcloud and Google's clients to these emulators, in ``project``.

    ``tasks_rest`` and ``scheduler_rest`` are the REST URLs (``http://127.0.0.1:PORT``), ``pubsub`` and
    ``firestore`` Google's emulators (``host:port``), ``tasks_grpc`` and ``scheduler_grpc`` the gRPC addresses
    Tributary's own settings read (``CLOUD_TASKS_EMULATOR_HOST``, ``CLOUD_SCHEDULER_EMULATOR_HOST``).
    """
    env = {"CLOUDSDK_CORE_PROJECT": project, "GOOGLE_CLOUD_PROJECT": project, **GCLOUD_NO_CREDENTIALS, **GCLOUD_QUIET}
    if tasks_rest:
        env["CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDTASKS"] = _override(tasks_rest)
    if scheduler_rest:
        env["CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDSCHEDULER"] = _override(scheduler_rest)
    if pubsub:
        env["CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB"] = _override(f"http://{pubsub}")
        env["PUBSUB_EMULATOR_HOST"] = pubsub
    if firestore:
        env["FIRESTORE_EMULATOR_HOST"] = firestore
    if tasks_grpc:
        env["CLOUD_TASKS_EMULATOR_HOST"] = tasks_grpc
    if scheduler_grpc:
        env["CLOUD_SCHEDULER_EMULATOR_HOST"] = scheduler_grpc
    return env


def stack_exports(endpoints: Mapping[str, str], project: str) -> dict[str, str]:
    """:func:`emulator_exports` for a running local stack, from the endpoints it recorded (``StackState``)."""
    return emulator_exports(
        project=project,
        tasks_rest=endpoints.get("tasks_rest_url"),
        scheduler_rest=endpoints.get("scheduler_rest_url"),
        pubsub=endpoints.get("pubsub_emulator_host"),
        firestore=endpoints.get("firestore_emulator_host"),
        tasks_grpc=endpoints.get("tasks_emulator_host"),
        scheduler_grpc=endpoints.get("scheduler_emulator_host"),
    )


def all_names() -> list[str]:
    """Every name :func:`emulator_exports` may set (what ``--unset`` removes, with or without a stack)."""
    host = "127.0.0.1:1"
    url = f"http://{host}"
    return list(emulator_exports(project="p", tasks_rest=url, scheduler_rest=url, pubsub=host, firestore=host,
                                 tasks_grpc=host, scheduler_grpc=host))  # fmt: skip


def render(exports: Mapping[str, str], *, unset: bool = False) -> str:
    """POSIX shell lines for ``eval``: ``export NAME=value`` (quoted), or ``unset NAME`` to undo them."""
    if unset:
        return "".join(f"unset {name}\n" for name in exports)
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in exports.items())
