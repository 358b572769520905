"""The embedded executor's SQLite file: one connection per thread, WAL, and short ``BEGIN IMMEDIATE`` writes.

WAL lets readers (``GET /v1/jobs``) run beside the one writer; ``busy_timeout`` makes a writer wait for
another (a thread or a process: ``tributary run`` beside ``tributary serve``) instead of failing at once.
Every write is one ``BEGIN IMMEDIATE`` transaction, so a read-then-write (applying an event to a job)
holds the write lock from its first read and never upgrades mid-way (which SQLite would refuse with
``SQLITE_BUSY`` rather than wait).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from common.core.errors import TransientError

#: Milliseconds a writer waits for another to finish before giving up (then a transient error: retried).
BUSY_TIMEOUT_MS = 30_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, source TEXT NOT NULL, status TEXT NOT NULL, batch_id TEXT,
    created_at TEXT NOT NULL, doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
CREATE INDEX IF NOT EXISTS jobs_source ON jobs (source, created_at);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_at);
CREATE INDEX IF NOT EXISTS jobs_batch ON jobs (batch_id, status);
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL, event_id TEXT NOT NULL, type TEXT NOT NULL, time TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (job_id, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parts (
    job_id TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (job_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sources (name TEXT PRIMARY KEY, watermark TEXT, cursors TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS runs (
    source TEXT NOT NULL, job_id TEXT NOT NULL, status TEXT NOT NULL, finished_at TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (source, job_id)
);
CREATE INDEX IF NOT EXISTS runs_finished ON runs (source, finished_at);
CREATE INDEX IF NOT EXISTS runs_status ON runs (source, status, finished_at);
CREATE TABLE IF NOT EXISTS loads (
    job_id TEXT NOT NULL, key TEXT NOT NULL, report TEXT NOT NULL, PRIMARY KEY (job_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dead_events (
    id TEXT PRIMARY KEY, reason TEXT NOT NULL, data BLOB NOT NULL, attributes TEXT NOT NULL, received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS queues (
    source TEXT PRIMARY KEY, config TEXT NOT NULL, overrides TEXT NOT NULL DEFAULT '{}',
    paused INTEGER NOT NULL DEFAULT 0, next_dispatch REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, source TEXT NOT NULL, job_id TEXT NOT NULL, payload TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL, created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued', lease_until REAL, owner TEXT
);
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (state, not_before);
CREATE INDEX IF NOT EXISTS tasks_source ON tasks (source, state);
CREATE INDEX IF NOT EXISTS tasks_job ON tasks (job_id);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule_fires (source TEXT PRIMARY KEY, fired_at TEXT NOT NULL);
"""


class Database:
    """One SQLite file shared by the state, the queue and the bus of a process (and by other processes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(Path(path).resolve())
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        # Threads of one process queue on this lock, which hands over at once; SQLite's own busy handler (for
        # other processes) polls with sleeps of up to 100 ms, which cost P6 most of its time. Between processes
        # (``tributary serve`` with worker processes, ``tributary run`` beside it) an advisory lock on a file
        # beside the database does the same: the kernel wakes the next writer as soon as one commits.
        self._writer = threading.RLock()
        self._lockfile = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        self.connection().executescript(SCHEMA)  # idempotent: every statement is IF NOT EXISTS

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit: transactions are explicit)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process; WAL's usual pairing
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed when the block ends, rolled back when it raises.

        Raises:
            TransientError: the file stayed locked past the busy timeout, or could not be written.
        """
        conn = self.connection()
        with self._writer, _flocked(self._lockfile):
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise TransientError(f"the embedded state {self.path} is busy: {exc}") from exc
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                conn.execute("ROLLBACK")
                raise TransientError(f"could not commit to {self.path}: {exc}") from exc

    def read(self, sql: str, args: Sequence[object] = ()) -> list[sqlite3.Row]:
        """The rows of one read (outside any transaction: WAL gives it a consistent snapshot)."""
        return self.connection().execute(sql, args).fetchall()


@contextlib.contextmanager
def _flocked(fd: int) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``fd`` (released when the block ends, or when the process dies)."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


_databases: dict[str, Database] = {}
_guard = threading.Lock()


def database(path: str | Path) -> Database:
    """The process's :class:`Database` for ``path`` (created with its schema on first use)."""
    key = str(Path(path).resolve())
    with _guard:
        if key not in _databases:
            _databases[key] = Database(key)
        return _databases[key]
