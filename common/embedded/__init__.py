"""The embedded executor: SQLite state, a durable SQLite task queue and an in-process event bus, no Google.

- :mod:`.db`: the SQLite file (WAL, busy timeout, ``BEGIN IMMEDIATE`` writes) and its schema;
- :mod:`.state`: the state port (jobs, event markers, parts, runs, source positions, batches, dead letters);
- :mod:`.queue`: the dispatch port: task rows claimed with a lease, each source's queue limits honoured;
- :mod:`.bus`: the events port: each event applied once by the status rule, an outbox for what could not be yet.

The runtime picks these by settings (``common.runtime.executors``); the worker loops that run the claimed
tasks live in ``common.runtime.worker``.
"""

from __future__ import annotations

from typing import Any

from common.embedded.bus import Consumer, EmbeddedBus
from common.embedded.queue import SqliteDispatcher
from common.embedded.state import SqliteState

__all__ = ["EmbeddedBus", "SqliteDispatcher", "SqliteState", "dispatcher", "events", "state"]


def dispatcher(settings: Any) -> SqliteDispatcher:
    """The embedded dispatcher on ``settings.sqlite_path``."""
    return SqliteDispatcher(settings.sqlite_path, lease=settings.embedded_lease)


def events(settings: Any, consumer: Consumer) -> EmbeddedBus:
    """The embedded bus on ``settings.sqlite_path``, applying events through ``consumer``."""
    return EmbeddedBus(settings.sqlite_path, consumer)


def state(settings: Any) -> SqliteState:
    """The SQLite state on ``settings.sqlite_path``."""
    return SqliteState(settings.sqlite_path)
