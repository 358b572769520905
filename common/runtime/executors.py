"""Which adapter serves each port: one place that reads the settings and builds them (docs/design.md, "Executors").

The runtime asks :func:`dispatcher`, :func:`events` and :func:`state` and never branches on where it runs.
Each registry maps a name to ``"module:factory"``, imported on first use only, so the ``gcp`` profile's
functions never import SQLite's adapters (nor the embedded profile Google's libraries). Adding an
executor is one line in a registry. A profile (``TRIBUTARY_PROFILE``) names the three together; each port
can be set on its own (``TRIBUTARY_DISPATCH``, ``TRIBUTARY_EVENTS``, ``TRIBUTARY_STATE``), and
``TRIBUTARY_DISPATCH_ROUTES`` sends chosen sources to another dispatcher (``fred=celery,gdelt=embedded``).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

from common.core.errors import ConfigError
from common.core.ports import Dispatcher, EventBus, QueueControl, StateStore
from common.runtime import status  # the consumer of an in-process bus (it imports this module too)
from common.settings import Settings, settings

__all__ = [
    "DISPATCHERS",
    "EVENTS",
    "PROFILES",
    "STATES",
    "chosen",
    "dispatcher",
    "dispatchers",
    "dispatchers_in_use",
    "events",
    "queue_control",
    "routes",
    "state",
]

#: Dispatch adapters: where a task goes. Factories take the settings.
DISPATCHERS: dict[str, str] = {
    "cloudtasks": "common.gcp.executor:dispatcher",
    "embedded": "common.embedded:dispatcher",
    "celery": "common.celeryq:dispatcher",
}
#: Events adapters: where job events go. Factories take the settings and the status consumer.
EVENTS: dict[str, str] = {
    "pubsub": "common.gcp.executor:events",
    "embedded": "common.embedded:events",
}
#: State adapters: jobs, parts, runs, source positions, batches, dead letters. Factories take the settings.
STATES: dict[str, str] = {
    "firestore": "common.gcp.executor:state",
    "sqlite": "common.embedded:state",
}
#: Profiles: (dispatch, events, state).
PROFILES: dict[str, tuple[str, str, str]] = {
    "gcp": ("cloudtasks", "pubsub", "firestore"),
    "embedded": ("embedded", "embedded", "sqlite"),
    "celery": ("celery", "embedded", "sqlite"),
}

_built: dict[tuple[str, str, Settings], Any] = {}
_lock = threading.RLock()


def chosen(s: Settings | None = None) -> tuple[str, str, str]:
    """The names of the dispatch, events and state adapters the settings choose."""
    s = s or settings()
    dispatch, bus, store = PROFILES[s.profile]
    return s.dispatch or dispatch, s.events or bus, s.state or store


def routes(s: Settings | None = None) -> dict[str, str]:
    """``TRIBUTARY_DISPATCH_ROUTES`` as ``{source: dispatcher}``.

    Raises:
        ConfigError: an entry is not ``source=dispatcher`` or names an unknown dispatcher.
    """
    out = {}
    for item in filter(None, (x.strip() for x in (s or settings()).dispatch_routes.split(","))):
        source, sep, name = (x.strip() for x in item.partition("="))
        if not sep or not source or name not in DISPATCHERS:
            raise ConfigError(
                f"TRIBUTARY_DISPATCH_ROUTES: {item!r} is not source=dispatcher "
                f"(dispatchers: {', '.join(sorted(DISPATCHERS))})"
            )
        out[source] = name
    return out


def _build(kind: str, registry: dict[str, str], name: str, s: Settings, *args: Any) -> Any:
    key = (kind, name, s)
    with _lock:
        if key not in _built:
            if name not in registry:
                raise ConfigError(
                    f"no {kind} adapter {name!r} (from TRIBUTARY_PROFILE={s.profile} or TRIBUTARY_{kind.upper()}): "
                    f"choose one of {', '.join(sorted(registry))}"
                )
            module, _, factory = registry[name].partition(":")
            _built[key] = getattr(importlib.import_module(module), factory)(s, *args)
        return _built[key]


def dispatcher(source: str | None = None, s: Settings | None = None) -> Dispatcher:
    """The dispatcher of ``source`` (its route, else the chosen one).

    Raises:
        ConfigError: the settings name an unknown dispatcher.
    """
    s = s or settings()
    name = routes(s).get(source or "", chosen(s)[0])
    return _build("dispatch", DISPATCHERS, name, s)


def dispatchers_in_use(s: Settings | None = None) -> set[str]:
    """The names of the dispatchers in use: the chosen one and the routes'.

    Raises:
        ConfigError: ``TRIBUTARY_DISPATCH_ROUTES`` is malformed.
    """
    s = s or settings()
    return {chosen(s)[0], *routes(s).values()}


def dispatchers(s: Settings | None = None) -> dict[str, Dispatcher]:
    """Every dispatcher in use (the chosen one and the routes'), by name."""
    s = s or settings()
    return {n: _build("dispatch", DISPATCHERS, n, s) for n in sorted(dispatchers_in_use(s))}


def queue_control(source: str, s: Settings | None = None) -> QueueControl | None:
    """The source's dispatcher as an operator's queue control, or None when it offers none.

    Raises:
        ConfigError: the settings name an unknown dispatcher.
    """
    found = dispatcher(source, s)
    return found if isinstance(found, QueueControl) else None


def state(s: Settings | None = None) -> StateStore:
    """The state store.

    Raises:
        ConfigError: the settings name an unknown store.
    """
    s = s or settings()
    return _build("state", STATES, chosen(s)[2], s)


def events(s: Settings | None = None) -> EventBus:
    """The event bus; an in-process bus applies events with the status rule (``common.runtime.status``).

    Raises:
        ConfigError: the settings name an unknown bus.
    """
    s = s or settings()
    return _build("events", EVENTS, chosen(s)[1], s, consumer(s))


def consumer(s: Settings) -> Callable[[bytes, str], Any]:
    """What an in-process bus delivers each event to: the status rule, then the load stage (as the
    ``status-push`` and ``load-push`` subscriptions do on Pub/Sub) unless ``TRIBUTARY_EMBEDDED_LOAD`` is off.

    Raises (the returned function):
        TransientError: the state or the warehouse is unavailable for now (the event is delivered again).
    """

    def consume(body: bytes, message_id: str) -> Any:
        job = status.apply_bytes(body, message_id)
        if job is not None and s.embedded_load:
            # Imported on first use: the warehouse's modules are no cold-start cost of the api and ingest.
            from common.runtime import load

            load.handle_bytes(body)
        return job

    return consume


def reset() -> None:
    """Forget the built adapters (tests change the settings between cases)."""
    with _lock:
        _built.clear()
