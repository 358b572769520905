"""The dispatch port on SQLite: task rows claimed with a lease, each source's queue limits honoured.

A task is a row named by its ``task_id`` (so a second enqueue of it is a duplicate, as in Cloud Tasks).
A worker claims the earliest due row of a source that is not paused, below its
``max_concurrent_dispatches`` and within its ``max_dispatches_per_second``, in one ``BEGIN IMMEDIATE``
transaction; the claim counts an attempt and holds a lease that the worker renews while it runs. A
process killed mid-task stops renewing: once the lease lapses (at once, on restart on the same host,
when its owner process is gone) the row is claimed again, which is Cloud Tasks' at-least-once delivery.
A transient outcome puts the row back with the queue's exponential backoff (``min_backoff`` doubled
``max_doublings`` times, then growing linearly, capped at ``max_backoff``); a row that has used
``max_attempts`` is dropped, as Cloud Tasks drops it, and the reaper fails its silent job.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from common.core.ports import QueueAction, QueueState
from common.core.tasks import QueueConfig, TaskPayload, task_id
from common.embedded.db import Database, database

__all__ = ["Claim", "SqliteDispatcher", "backoff"]

#: Seconds a claim holds its row without a renewal (workers renew every third of it).
LEASE_SECONDS = 30.0


def backoff(queue: QueueConfig, attempt: int) -> float:
    """Seconds before retrying after ``attempt`` (1-based) failed, as Cloud Tasks' retry config computes it."""
    n = max(0, attempt - 1)
    if n <= queue.max_doublings:
        delay = queue.min_backoff * 2**n
    else:
        delay = queue.min_backoff * 2**queue.max_doublings * (n - queue.max_doublings + 1)
    return float(min(queue.max_backoff, max(queue.min_backoff, delay)))


@dataclass(frozen=True)
class Claim:
    """A claimed task: its payload, which delivery this is (1-based), and its queue's settings."""

    task_id: str
    payload: TaskPayload
    attempt: int
    queue: QueueConfig


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(owner: str | None) -> bool:
    """Whether a lease's owner may still run: another host's, or a live process of this host."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SqliteDispatcher:
    """Task rows in the embedded SQLite file; :meth:`claim`, :meth:`done` and :meth:`retry` are the worker's side."""

    name = "embedded"

    def __init__(self, path: str | Path, *, lease: float = LEASE_SECONDS) -> None:
        self.db: Database = database(path)
        self.lease = lease
        self.owner = _owner()
        self._declared: dict[str, bytes] = {}  # the queue config this process wrote, by source

    # ---- the port -----------------------------------------------------------------------------------

    def enqueue(self, payload: TaskPayload, queue: QueueConfig, *, schedule_time: datetime | None = None) -> bool:
        """Add the task; False when a task of its id is already waiting or running.

        Raises:
            common.core.errors.TransientError: the file stayed locked.
        """
        created, _ = self._insert([payload], queue, schedule_time)
        return created == 1

    def enqueue_many(self, payloads: list[TaskPayload], queue: QueueConfig) -> tuple[int, int]:
        """Add many tasks of one source in one transaction; ``(created, duplicates)``.

        Raises:
            common.core.errors.TransientError: the file stayed locked.
        """
        return self._insert(payloads, queue, None)

    def pending(self, source: str) -> list[str]:
        rows = self.db.read("SELECT task_id FROM tasks WHERE source = ?", (source,))
        return [r["task_id"] for r in rows]

    def _insert(
        self, payloads: list[TaskPayload], queue: QueueConfig, schedule_time: datetime | None
    ) -> tuple[int, int]:
        if not payloads:
            return 0, 0
        now = time.time()
        due = schedule_time.astimezone(UTC).timestamp() if schedule_time else now
        created = 0
        config = orjson.dumps(asdict(queue))
        with self.db.write() as c:
            for source in {p.source for p in payloads}:
                if self._declared.get(source) == config:
                    continue  # written by this process already: a queue's declaration rarely changes
                c.execute(
                    "INSERT INTO queues (source, config) VALUES (?, ?) ON CONFLICT (source) DO UPDATE SET config = ?",
                    (source, config, config),
                )
            for p in payloads:
                row = (task_id(p.job_id, p.part, p.run), p.source, p.job_id, p.model_dump_json(), due, now)
                cur = c.execute(
                    "INSERT OR IGNORE INTO tasks (task_id, source, job_id, payload, not_before, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                )
                created += cur.rowcount
        self._declared.update((p.source, config) for p in payloads)
        return created, len(payloads) - created

    # ---- the worker's side --------------------------------------------------------------------------

    def claim(self, now: float | None = None) -> Claim | None:
        """The earliest due task of a queue with room and a dispatch token, leased to this process; else None.

        Raises:
            common.core.errors.TransientError: the file stayed locked.
        """
        now = time.time() if now is None else now
        with self.db.write() as c:
            queues = c.execute(
                "SELECT source, config, overrides, next_dispatch FROM queues WHERE paused = 0"
            ).fetchall()
            ready: dict[str, tuple[QueueConfig, float]] = {}
            for q in queues:
                config = QueueConfig(**{**orjson.loads(q["config"]), **orjson.loads(q["overrides"])})
                if q["next_dispatch"] > now:
                    continue
                running = c.execute(
                    "SELECT count(*) FROM tasks WHERE source = ? AND state = 'leased' AND lease_until > ?",
                    (q["source"], now),
                ).fetchone()[0]
                if running < config.max_concurrent_dispatches:
                    ready[q["source"]] = (config, q["next_dispatch"])
            if not ready:
                return None
            marks = ",".join("?" * len(ready))
            while True:
                row = c.execute(
                    f"SELECT task_id, source, payload, attempt, state, owner FROM tasks WHERE source IN ({marks}) "
                    "AND not_before <= ? AND (state = 'queued' OR (state = 'leased' AND lease_until <= ?)) "
                    "ORDER BY not_before, created_at LIMIT 1",
                    [*ready, now, now],
                ).fetchone()
                if row is None:
                    return None
                config, next_dispatch = ready[row["source"]]
                if row["state"] == "leased" and 0 < config.max_attempts <= row["attempt"]:
                    # Its last attempt died without an answer: Cloud Tasks would not dispatch it again either.
                    c.execute("DELETE FROM tasks WHERE task_id = ?", (row["task_id"],))
                    continue
                break
            attempt = row["attempt"] + 1
            c.execute(
                "UPDATE tasks SET state = 'leased', attempt = ?, lease_until = ?, owner = ? WHERE task_id = ?",
                (attempt, now + self.lease, self.owner, row["task_id"]),
            )
            rate = config.max_dispatches_per_second
            interval = 1.0 / rate if rate > 0 else 0.0
            burst = max(1, int(rate))  # up to a second's worth of dispatches at once, like a token bucket
            c.execute(
                "UPDATE queues SET next_dispatch = ? WHERE source = ?",
                (max(next_dispatch, now - (burst - 1) * interval) + interval, row["source"]),
            )
        return Claim(row["task_id"], TaskPayload.model_validate_json(row["payload"]), attempt, config)

    def renew(self, task_ids: list[str]) -> None:
        """Extend this process's leases on ``task_ids`` (the worker's heartbeat)."""
        if not task_ids:
            return
        marks = ",".join("?" * len(task_ids))
        with contextlib.suppress(Exception), self.db.write() as c:  # a missed beat only shortens the lease
            c.execute(
                f"UPDATE tasks SET lease_until = ? WHERE owner = ? AND state = 'leased' AND task_id IN ({marks})",
                [time.time() + self.lease, self.owner, *task_ids],
            )

    def done(self, claim: Claim) -> None:
        """The task ended (succeeded, or failed for good): its row goes."""
        with self.db.write() as c:
            c.execute("DELETE FROM tasks WHERE task_id = ? AND attempt = ?", (claim.task_id, claim.attempt))

    def retry(self, claim: Claim, retry_after: float | None = None) -> None:
        """Put the task back after its queue's backoff (or the upstream's ``Retry-After``, when longer)."""
        delay = max(backoff(claim.queue, claim.attempt), retry_after or 0.0)
        with self.db.write() as c:
            c.execute(
                "UPDATE tasks SET state = 'queued', lease_until = NULL, owner = NULL, not_before = ? "
                "WHERE task_id = ? AND attempt = ?",
                (time.time() + delay, claim.task_id, claim.attempt),
            )

    def update_queue(self, source: str, **changes: Any) -> None:
        """Change a queue's settings over what its source declares (as ``gcloud tasks queues update`` does for a
        Cloud Tasks queue): e.g. ``max_dispatches_per_second=50``; later enqueues keep them.

        Raises:
            TypeError: a change names no :class:`QueueConfig` field.
        """
        QueueConfig(**changes)  # names and types checked before anything is written
        with self.db.write() as c:
            row = c.execute("SELECT overrides FROM queues WHERE source = ?", (source,)).fetchone()
            merged = {**(orjson.loads(row["overrides"]) if row else {}), **changes}
            c.execute(
                "INSERT INTO queues (source, config, overrides) VALUES (?, ?, ?) "
                "ON CONFLICT (source) DO UPDATE SET overrides = excluded.overrides",
                (source, orjson.dumps(asdict(QueueConfig())), orjson.dumps(merged)),
            )

    def pause(self, source: str, paused: bool = True) -> None:
        """Stop (or resume) claiming the source's tasks; they wait in their rows."""
        with self.db.write() as c:
            c.execute(
                "INSERT INTO queues (source, config, paused) VALUES (?, ?, ?) "
                "ON CONFLICT (source) DO UPDATE SET paused = excluded.paused",
                (source, orjson.dumps(asdict(QueueConfig())), int(paused)),
            )

    def purge(self, source: str) -> int:
        """Delete every waiting task of the source (running ones finish); returns how many went."""
        with self.db.write() as c:
            return c.execute("DELETE FROM tasks WHERE source = ? AND state = 'queued'", (source,)).rowcount

    def delete_job_tasks(self, job_id: str, source: str) -> int:
        """Delete the job's waiting tasks (any run, any part); a running one finishes, and the next part checks
        the job first (``common.runtime.ingest``). Returns how many went."""
        with self.db.write() as c:
            return c.execute(
                "DELETE FROM tasks WHERE job_id = ? AND source = ? AND state = 'queued'", (job_id, source)
            ).rowcount

    def queue_states(self, sources: list[str]) -> list[QueueState]:
        """Each source's queue: PAUSED or RUNNING, with its settings once a task was enqueued (a source whose
        queue was never used is RUNNING, its limits unknown here until its first task)."""
        out = []
        for source in sources:
            rows = self.db.read("SELECT config, overrides, paused FROM queues WHERE source = ?", (source,))
            if not rows:
                out.append(QueueState(source, f"embedded/{source}", "RUNNING"))
                continue
            config = QueueConfig(**{**orjson.loads(rows[0]["config"]), **orjson.loads(rows[0]["overrides"])})
            out.append(
                QueueState(
                    source,
                    f"embedded/{source}",
                    "PAUSED" if rows[0]["paused"] else "RUNNING",
                    config.max_dispatches_per_second,
                    config.max_concurrent_dispatches,
                )
            )
        return out

    def set_queue_state(self, source: str, action: QueueAction) -> QueueState | None:
        """Pause (stop claiming), resume, or purge (delete every waiting task of) the source's queue."""
        if action == "purge":
            self.purge(source)
        else:
            self.pause(source, action == "pause")
        return self.queue_states([source])[0]

    def recover(self) -> int:
        """Release the leases of this host's dead processes (a ``kill -9``), so their tasks run again now."""
        rows = self.db.read("SELECT task_id, owner FROM tasks WHERE state = 'leased'")
        dead = [r["task_id"] for r in rows if not _alive(r["owner"])]
        if dead:
            with self.db.write() as c:
                c.executemany("UPDATE tasks SET lease_until = 0 WHERE task_id = ?", [(t,) for t in dead])
        return len(dead)

    def next_due(self) -> float | None:
        """When the earliest waiting task is due (epoch seconds), or None when there is none."""
        rows = self.db.read("SELECT min(not_before) AS t FROM tasks WHERE state = 'queued'")
        return rows[0]["t"] if rows and rows[0]["t"] is not None else None
