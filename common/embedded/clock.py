"""When each source's cron last fired in the embedded executor, so a firing happens once, across restarts."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from common.embedded.db import Database, database
from common.embedded.state import stamp

__all__ = ["ScheduleBook"]


class ScheduleBook:
    """``schedule_fires``: the last fire time per source, advanced by compare-and-set."""

    def __init__(self, path: str | Path) -> None:
        self.db: Database = database(path)

    def last(self, source: str) -> datetime | None:
        """When ``source`` last fired here, or None before its first firing."""
        rows = self.db.read("SELECT fired_at FROM schedule_fires WHERE source = ?", (source,))
        return datetime.fromisoformat(rows[0]["fired_at"]) if rows else None

    def claim(self, source: str, fire: datetime) -> bool:
        """Record ``fire`` as the source's last firing; False when it (or a later one) is already recorded,
        by this process or another, so each firing is claimed once.

        Raises:
            common.core.errors.TransientError: the file stayed locked.
        """
        when = stamp(fire)
        with self.db.write() as c:
            row = c.execute("SELECT fired_at FROM schedule_fires WHERE source = ?", (source,)).fetchone()
            if row is not None and row["fired_at"] >= when:
                return False
            c.execute("INSERT OR REPLACE INTO schedule_fires VALUES (?, ?)", (source, when))
        return True
