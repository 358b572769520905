"""The events port in process: an outbox in the SQLite file, applied once, in order of arrival.

:meth:`EmbeddedBus.publish` stores the CloudEvent's bytes under its event id (a republished event is
stored once) and then applies what is waiting, oldest first, through the consumer it was given (the
runtime's status rule, which writes the event's marker: each event changes its job once). A row leaves
the outbox only after it was applied; one that could not be (the state was locked) waits for the next
publish or :meth:`drain`, so nothing is lost when a process dies between the two. No row is written by
every event: each has its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.core.errors import TransientError
from common.core.events import Event
from common.embedded.db import Database, database

__all__ = ["EmbeddedBus"]

log = logging.getLogger("tributary.events")

#: Outbox rows read per round of a drain.
DRAIN_BATCH = 64

#: What applies one event: ``(body, event_id)``; raises only for a transient failure (the row stays).
Consumer = Callable[[bytes, str], Any]


class EmbeddedBus:
    """Job events through the SQLite outbox to ``consumer``, in this process."""

    name = "embedded"

    def __init__(self, path: str | Path, consumer: Consumer) -> None:
        self.db: Database = database(path)
        self.consumer = consumer
        self._draining = threading.Lock()

    def publish(self, event: Event) -> str:
        """Store the event, then apply what waits; returns the event id.

        Raises:
            TransientError: the event could not be stored (the task is retried and publishes it again).
        """
        with self.db.write() as c:
            c.execute("INSERT OR IGNORE INTO outbox (event_id, body) VALUES (?, ?)", (event.id, event.to_bytes()))
        self.drain()
        return event.id

    def drain(self) -> int:
        """Apply the waiting events oldest first; returns how many were applied. One drain at a time per process."""
        applied = 0
        with self._draining:
            while True:
                rows = self.db.read("SELECT seq, event_id, body FROM outbox ORDER BY seq LIMIT ?", (DRAIN_BATCH,))
                if not rows:
                    return applied
                for row in rows:
                    try:
                        self.consumer(bytes(row["body"]), row["event_id"])
                    except TransientError as exc:
                        log.warning("event %s not applied yet (kept): %s", row["event_id"], exc)
                        return applied
                    with self.db.write() as c:
                        c.execute("DELETE FROM outbox WHERE seq = ?", (row["seq"],))
                    applied += 1

    def waiting(self) -> int:
        """How many events wait in the outbox."""
        return int(self.db.read("SELECT count(*) AS n FROM outbox")[0]["n"])
