"""The events port in process: each event applied at once by the status rule, an outbox for what could not be.

:meth:`EmbeddedBus.publish` applies the CloudEvent through the consumer it was given (the runtime's status
rule, which writes the event's marker in the same transaction as the job: each event changes its job once).
Only an event that could not be applied now (the state was locked), or that arrives while older ones wait,
is stored in the outbox under its event id (a republished event is stored once); what waits is applied
oldest first by the next publish or :meth:`drain`, and leaves the outbox only once applied. A process that
dies mid-publish never answered its task, which runs again and publishes again: nothing is lost, and
applying first spares the common case two transactions.
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
        """Apply the event (or keep it in the outbox, behind what waits there); returns the event id.

        Raises:
            TransientError: the event could be neither applied nor stored (the task is retried and publishes it
                again).
        """
        body = event.to_bytes()
        if not self._backlog():
            try:
                self.consumer(body, event.id)
                return event.id
            except TransientError as exc:
                log.warning("event %s not applied yet (kept): %s", event.id, exc)
        with self.db.write() as c:
            c.execute("INSERT OR IGNORE INTO outbox (event_id, body) VALUES (?, ?)", (event.id, body))
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

    def _backlog(self) -> bool:
        """Whether some events wait in the outbox (a new one must queue behind them, to keep their order)."""
        return bool(self.db.read("SELECT 1 FROM outbox LIMIT 1"))

    def waiting(self) -> int:
        """How many events wait in the outbox."""
        return int(self.db.read("SELECT count(*) AS n FROM outbox")[0]["n"])
