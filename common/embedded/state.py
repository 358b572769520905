"""The state port on SQLite: the same records as Firestore's repositories, and the same rules.

An event is applied in one ``BEGIN IMMEDIATE`` transaction that reads the job and the event's marker,
writes the marker, and applies ``common.core.jobs.apply_event``: a duplicate finds its marker and changes
nothing, an event of a job never created writes nothing. A part's event stores the part; the job is
finished by counting its parts, in the same transaction (SQLite has one writer at a time, so the last
part always sees every part). The source's watermark and cursors only move forward, and only for the
event that decided the job.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from common.core.errors import TransientError
from common.core.events import Event, EventData, EventType
from common.core.jobs import (
    Job,
    JobStatus,
    Progress,
    apply_event,
    awaits_parts,
    cancel_event,
    is_valid_id,
    new_run,
    outcome_key,
    parts_succeeded,
)
from common.core.ports import MAX_TIMELINE, StoredLetter, WrongState
from common.core.source_state import SourceState
from common.core.warehouse import summarize_loads
from common.embedded.db import Database, database

__all__ = ["SqliteState", "stamp"]

#: The job fields a listing may filter on (the API's ``GET /v1/jobs``, batch counts).
FILTERS = ("source", "status", "batch_id")


def stamp(when: datetime) -> str:
    """A UTC time as a fixed-width string, so that text order is time order."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _job(doc: str | bytes) -> Job:
    return Job.model_validate_json(doc)


def _dump(job: Job) -> bytes:
    return orjson.dumps(job.model_dump(mode="json"))


class SqliteState:
    """Jobs, parts, runs, source positions, batches and dead letters in one SQLite file."""

    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.db: Database = database(path)

    # ---- jobs ---------------------------------------------------------------------------------------

    def create_job(self, job: Job) -> tuple[Job, bool]:
        """Write ``job`` unless a job with its id exists; returns the stored job and whether it is new.

        Raises:
            common.core.errors.TransientError: the file stayed locked.
        """
        with self.db.write() as c:
            row = c.execute("SELECT doc FROM jobs WHERE job_id = ?", (job.job_id,)).fetchone()
            if row is not None:
                return _job(row["doc"]), False
            c.execute(
                "INSERT INTO jobs (job_id, source, status, batch_id, created_at, doc) VALUES (?, ?, ?, ?, ?, ?)",
                (job.job_id, job.source, job.status.value, job.batch_id, stamp(job.created_at), _dump(job)),
            )
        return job, True

    def get_job(self, job_id: str, *, with_progress: bool = True) -> Job | None:
        if not is_valid_id(job_id):
            return None
        rows = self.db.read("SELECT doc FROM jobs WHERE job_id = ?", (job_id,))
        if not rows:
            return None
        job = _job(rows[0]["doc"])
        if with_progress and job.progress and job.progress.total > 1 and not job.status.terminal:
            job.progress = Progress(done=self.count_parts(job_id, job.run), total=job.progress.total)
        return job

    def list_jobs(
        self, *, source: str | None = None, status: str | None = None, batch_id: str | None = None, limit: int = 50
    ) -> list[Job]:
        where, args = self._where({"source": source, "status": status, "batch_id": batch_id})
        rows = self.db.read(f"SELECT doc FROM jobs{where} ORDER BY created_at DESC LIMIT ?", [*args, limit])
        return [_job(r["doc"]) for r in rows]

    @staticmethod
    def _where(filters: dict[str, str | None]) -> tuple[str, list[object]]:
        names = [k for k, v in filters.items() if v is not None and k in FILTERS]
        if not names:
            return "", []
        return " WHERE " + " AND ".join(f"{n} = ?" for n in names), [filters[n] for n in names]

    def count_by(self, filters: dict[str, str]) -> int:
        where, args = self._where(dict(filters))
        return int(self.db.read(f"SELECT count(*) AS n FROM jobs{where}", args)[0]["n"])

    def statuses(self, job_ids: list[str]) -> list[str | None]:
        found: dict[str, str] = {}
        for start in range(0, len(job_ids), 500):
            chunk = job_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for r in self.db.read(f"SELECT job_id, status FROM jobs WHERE job_id IN ({marks})", chunk):
                found[r["job_id"]] = r["status"]
        return [found.get(j) for j in job_ids]

    @staticmethod
    def _of_run(run: int) -> str:
        """The parts of a run: a retry's parts overwrite the same rows, and carry their run (run 1's may not)."""
        return "" if run <= 1 else " AND json_extract(doc, '$.run') = ?"

    def count_parts(self, job_id: str, run: int = 1) -> int:
        args: list[object] = [job_id] + ([run] if run > 1 else [])
        sql = f"SELECT count(*) AS n FROM parts WHERE job_id = ?{self._of_run(run)}"
        return int(self.db.read(sql, args)[0]["n"])

    def part_update_times(self, job_id: str) -> list[datetime]:
        rows = self.db.read("SELECT updated_at FROM parts WHERE job_id = ?", (job_id,))
        return [datetime.fromisoformat(r["updated_at"]) for r in rows]

    # ---- events -------------------------------------------------------------------------------------

    def record_event(self, event: Event) -> Job | None:
        """Apply ``event`` once, in one transaction; None for an event of a job never created (nothing written).

        Raises:
            common.core.errors.TransientError: the file stayed locked.
        """
        data = event.data
        with self.db.write() as c:
            row = c.execute("SELECT doc FROM jobs WHERE job_id = ?", (data.job_id,)).fetchone()
            if row is None:
                return None
            job = _job(row["doc"])
            if job.source != data.source:
                return None
            if data.run != job.run:
                return job  # a late event of a run a retry replaced: no marker, nothing changes
            if not self._mark(c, event):
                return job  # applied before
            if event.type is EventType.progress and data.part:
                c.execute(
                    "INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?)",
                    (data.job_id, data.part, orjson.dumps(data.model_dump(mode="json")), stamp(datetime.now(UTC))),
                )
                if job.status is JobStatus.running and job.progress and job.progress.total > 1:
                    return self._finish(c, job)
            new = apply_event(job, event)
            if new is not None:
                self._store(c, job, new, event)
                job = new
            if event.type in (EventType.started, EventType.progress) and job.progress and job.progress.total > 1:
                return self._finish(c, job)
            return job

    @staticmethod
    def _mark(c: sqlite3.Connection, event: Event) -> bool:
        """Write the event's marker (``Event.marker``, the console's timeline); False when it was there already."""
        row = (event.data.job_id, event.id, event.type.value, stamp(event.time), orjson.dumps(event.marker()))
        return c.execute("INSERT OR IGNORE INTO job_events VALUES (?, ?, ?, ?, ?)", row).rowcount > 0

    def _store(self, c: sqlite3.Connection, old: Job, new: Job, event: Event) -> None:
        """Write the job; the event that decides its outcome writes its run and moves its source forward."""
        c.execute("UPDATE jobs SET status = ?, doc = ? WHERE job_id = ?", (new.status.value, _dump(new), new.job_id))
        if new.status.terminal and new.decided_by != old.decided_by:
            run = {
                "job_id": new.job_id,
                "status": new.status.value,
                "finished_at": stamp(event.time),
                "watermark": event.data.watermark,
                "error": new.error.model_dump() if new.error else None,
            }
            c.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?)",
                (new.source, new.job_id, new.status.value, run["finished_at"], orjson.dumps(run)),
            )
        if new.status is JobStatus.succeeded and new.decided_by == outcome_key(event):
            self._advance(c, new.source, event.data)

    @staticmethod
    def _advance(c: sqlite3.Connection, source: str, data: EventData) -> None:
        """Move the source's watermark and cursors forward (string comparison of ISO values), never back."""
        if not (data.watermark or data.cursors):
            return
        row = c.execute("SELECT watermark, cursors FROM sources WHERE name = ?", (source,)).fetchone()
        watermark = row["watermark"] if row else None
        cursors: dict[str, str] = orjson.loads(row["cursors"]) if row else {}
        if data.watermark and data.watermark > (watermark or ""):
            watermark = data.watermark
        cursors.update({k: v for k, v in data.cursors.items() if v > cursors.get(k, "")})
        c.execute(
            "INSERT OR REPLACE INTO sources (name, watermark, cursors) VALUES (?, ?, ?)",
            (source, watermark, orjson.dumps(cursors)),
        )

    def _finish(self, c: sqlite3.Connection, job: Job) -> Job:
        """Succeed a multi-part job whose parts have all landed (a success beats a failure); else ``job``."""
        if not awaits_parts(job) or job.progress is None:
            return job
        args: list[object] = [job.job_id] + ([job.run] if job.run > 1 else [])
        sql = f"SELECT doc FROM parts WHERE job_id = ?{self._of_run(job.run)}"
        parts = [orjson.loads(r["doc"]) for r in c.execute(sql, args)]
        if len(parts) < job.progress.total:
            return job
        done = parts_succeeded(job, parts)
        new = apply_event(job, done)
        if new is None:
            return job
        self._store(c, job, new, done)
        return new

    def finish_if_complete(self, job_id: str) -> Job | None:
        with self.db.write() as c:
            row = c.execute("SELECT doc FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            return None if row is None else self._finish(c, _job(row["doc"]))

    # ---- operator actions ---------------------------------------------------------------------------

    def retry_job(self, job_id: str, now: datetime) -> Job | None:
        """Start a new run of a failed or cancelled job, in one transaction.

        Raises:
            WrongState: the job is queued, running or succeeded.
        """
        with self.db.write() as c:
            row = c.execute("SELECT doc FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            job = _job(row["doc"])
            if not job.status.retryable:
                raise WrongState(job, "only a failed or cancelled job can be retried")
            new = new_run(job, now)
            c.execute("UPDATE jobs SET status = ?, doc = ? WHERE job_id = ?", (new.status.value, _dump(new), job_id))
        return new

    def cancel_job(self, job_id: str, now: datetime) -> Job | None:
        """End the job's current run as ``cancelled`` (an event applied like any other), in one transaction.

        Raises:
            WrongState: the job already ended.
        """
        with self.db.write() as c:
            row = c.execute("SELECT doc FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            job = _job(row["doc"])
            if job.status.terminal:
                raise WrongState(job, "only a queued or running job can be cancelled")
            event = cancel_event(job, now)
            self._mark(c, event)
            new = apply_event(job, event) or job
            self._store(c, job, new, event)
        return new

    # ---- sources ------------------------------------------------------------------------------------

    def _last_runs(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        newest = self.db.read("SELECT doc FROM runs WHERE source = ? ORDER BY finished_at DESC LIMIT 1", (name,))
        if newest:
            last = orjson.loads(newest[0]["doc"])
            out.update(
                last_status=last.get("status"),
                last_finished_at=last.get("finished_at"),
                last_job_id=last.get("job_id"),
                last_error=last.get("error"),
            )
        best = self.db.read(
            "SELECT finished_at FROM runs WHERE source = ? AND status = 'succeeded' ORDER BY finished_at DESC LIMIT 1",
            (name,),
        )
        if best:
            out["last_success_at"] = best[0]["finished_at"]
        return out

    def _position(self, name: str) -> dict[str, Any]:
        rows = self.db.read("SELECT watermark, cursors FROM sources WHERE name = ?", (name,))
        if not rows:
            return {}
        return {"name": name, "watermark": rows[0]["watermark"], "cursors": orjson.loads(rows[0]["cursors"])}

    def source_state(self, name: str) -> SourceState:
        data = {**self._position(name), **self._last_runs(name)}
        last = data.get("last_success_at")
        return SourceState(
            watermark=data.get("watermark"),
            last_success_at=datetime.fromisoformat(last) if last else None,
            last_status=data.get("last_status"),
            cursors=dict(data.get("cursors") or {}),
        )

    def source_states(self, names: list[str]) -> dict[str, dict[str, Any]]:
        return {n: {**self._position(n), **self._last_runs(n)} for n in names}

    # ---- batches ------------------------------------------------------------------------------------

    def create_batch(self, batch_id: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        with self.db.write() as c:
            row = c.execute("SELECT doc FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
            if row is not None:
                return dict(orjson.loads(row["doc"]))
            c.execute("INSERT INTO batches VALUES (?, ?)", (batch_id, orjson.dumps(doc)))
        return None

    def put_batch(self, batch_id: str, doc: dict[str, Any]) -> None:
        with self.db.write() as c:
            c.execute("INSERT OR REPLACE INTO batches VALUES (?, ?)", (batch_id, orjson.dumps(doc)))

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        rows = self.db.read("SELECT doc FROM batches WHERE batch_id = ?", (batch_id,))
        return dict(orjson.loads(rows[0]["doc"])) if rows else None

    # ---- the console's reads ------------------------------------------------------------------------

    def job_events(self, job_id: str) -> list[dict[str, Any]]:
        sql = "SELECT event_id, doc FROM job_events WHERE job_id = ? ORDER BY time, event_id LIMIT ?"
        out = []
        for r in self.db.read(sql, (job_id, MAX_TIMELINE)):
            doc = orjson.loads(r["doc"])
            out.append({"id": r["event_id"], **doc, "time": datetime.fromisoformat(doc["time"])})
        return out

    def job_run(self, source: str, job_id: str) -> dict[str, Any] | None:
        rows = self.db.read("SELECT doc FROM runs WHERE source = ? AND job_id = ?", (source, job_id))
        return dict(orjson.loads(rows[0]["doc"])) if rows else None

    def recent_batches(self, limit: int) -> list[dict[str, Any]]:
        sql = "SELECT batch_id, doc FROM batches ORDER BY json_extract(doc, '$.created_at') DESC LIMIT ?"
        return [dict(orjson.loads(r["doc"]), batch_id=r["batch_id"]) for r in self.db.read(sql, (limit,))]

    # ---- loads --------------------------------------------------------------------------------------

    def record_load(self, job_id: str, key: str, report: dict[str, Any]) -> dict[str, Any]:
        """Store the report and set the job's ``load`` to the sum of its reports, in one transaction.

        Raises:
            TransientError: the job is not recorded yet.
        """
        with self.db.write() as c:
            row = c.execute("SELECT doc FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                raise TransientError(f"job {job_id} is not recorded yet")
            c.execute("INSERT OR REPLACE INTO loads VALUES (?, ?, ?)", (job_id, key or "job", orjson.dumps(report)))
            reports = [
                orjson.loads(r["report"]) for r in c.execute("SELECT report FROM loads WHERE job_id = ?", (job_id,))
            ]
            summary = summarize_loads(reports)
            job = _job(row["doc"]).model_copy(update={"load": summary})
            c.execute("UPDATE jobs SET doc = ? WHERE job_id = ?", (_dump(job), job_id))
        return summary

    # ---- dead letters -------------------------------------------------------------------------------

    def record_dead_letter(
        self, message_id: str, raw: bytes, reason: str, attributes: dict[str, str] | None = None
    ) -> None:
        with self.db.write() as c:
            c.execute(
                "INSERT OR REPLACE INTO dead_events VALUES (?, ?, ?, ?, ?)",
                (message_id or "unknown", reason, raw, orjson.dumps(attributes or {}), stamp(datetime.now(UTC))),
            )

    def dead_letters(self, limit: int) -> list[StoredLetter]:
        rows = self.db.read("SELECT * FROM dead_events ORDER BY received_at LIMIT ?", (limit,))
        return [StoredLetter(r["id"], r["reason"], bytes(r["data"]), r["received_at"]) for r in rows]

    def delete_dead_letter(self, letter_id: str) -> None:
        with self.db.write() as c:
            c.execute("DELETE FROM dead_events WHERE id = ?", (letter_id,))
