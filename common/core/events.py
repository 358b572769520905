"""The versioned completion-event schema: CloudEvents published on the ``ingest-events`` topic.

Each Pub/Sub message body is one structured-mode CloudEvent (JSON), so any consumer can read it
without Tributary's code. The event id is deterministic (job, attempt, type, sequence), which lets the
status function apply each event exactly once however often Pub/Sub delivers it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, Field

#: Bumped on any incompatible change of ``EventData``; consumers reject versions they don't know.
SCHEMA_VERSION = 1
TYPE_PREFIX = "dev.tributary.job."


class EventType(StrEnum):
    """The kinds of job event, as the suffix of the CloudEvent ``type``."""

    started = "started"
    progress = "progress"
    retrying = "retrying"
    succeeded = "succeeded"
    failed = "failed"
    #: Written by the api (``POST /v1/jobs/{id}:cancel``), never published: the operator's stop, final for its run.
    cancelled = "cancelled"


class PartProgress(BaseModel):
    done: int
    total: int


class EventData(BaseModel):
    """The ``data`` of a job event (schema version 1)."""

    schema_version: int = SCHEMA_VERSION
    job_id: str
    source: str
    attempt: int = 1
    #: Which run of the job (1, then one more per retry): events of another run never change the job.
    run: int = 1
    records: int = 0
    bytes: int = 0
    outputs: list[str] = Field(default_factory=list)
    error: dict[str, Any] | None = None
    progress: PartProgress | None = None
    watermark: str | None = None
    #: For jobs split into parts: the key of the part this event reports on.
    part: str | None = None
    #: Incremental cursors reached (e.g. ``{"DFF": "2024-05-01"}``); the source keeps the maximum per key.
    cursors: dict[str, str] = Field(default_factory=dict)
    #: What the ingest measured while handling the attempt (``cpu_seconds``, ``wall_seconds``,
    #: ``peak_rss_bytes``), on outcome and part events; optional, so older events still read.
    usage: dict[str, float] | None = None


class Event(BaseModel):
    """A job event with its CloudEvents envelope."""

    id: str
    type: EventType
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    data: EventData

    @classmethod
    def make(cls, type: EventType, data: EventData, *, seq: int | str = 0) -> Event:
        """An event whose id is derived from job, run, attempt, type and ``seq`` (so redeliveries collapse).

        The first run's ids are ``job.attempt.type.seq``, as before runs existed; a retry's carry ``r<run>``.
        """
        run = f"r{data.run}." if data.run > 1 else ""
        return cls(id=f"{data.job_id}.{run}{data.attempt}.{type.value}.{seq}", type=type, data=data)

    def marker(self) -> dict[str, Any]:
        """What a state store keeps of an applied event (its marker): enough for a timeline (type, time, run,
        attempt, error, progress, part, counts), never the outputs list."""
        data = self.data
        out: dict[str, Any] = {"type": self.type.value, "time": self.time.isoformat(), "run": data.run}
        out["attempt"] = data.attempt
        if data.error is not None:
            out["error"] = data.error
        if data.progress is not None:
            out["progress"] = data.progress.model_dump()
        if data.part:
            out["part"] = data.part
        if data.records or data.bytes:
            out.update(records=data.records, bytes=data.bytes)
        return out

    def to_cloudevent(self) -> dict[str, Any]:
        """The structured-mode CloudEvent (a JSON-ready dict)."""
        return {
            "specversion": "1.0",
            "id": self.id,
            "source": f"//tributary/sources/{self.data.source}",
            "type": TYPE_PREFIX + self.type.value,
            "subject": f"jobs/{self.data.job_id}",
            "time": self.time.isoformat(),
            "datacontenttype": "application/json",
            "dataschema": f"tributary://schemas/job-event/v{SCHEMA_VERSION}",
            "data": self.data.model_dump(mode="json"),
        }

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_cloudevent())

    @classmethod
    def from_cloudevent(cls, ce: dict[str, Any]) -> Event:
        """Parse a structured CloudEvent dict.

        Raises:
            ValueError: the event is not a Tributary job event of a known schema version.
        """
        etype = str(ce.get("type", ""))
        if not etype.startswith(TYPE_PREFIX):
            raise ValueError(f"not a Tributary job event: type {etype!r}")
        data = ce.get("data") or {}
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"unsupported job-event schema_version {version!r} (this build reads {SCHEMA_VERSION})")
        return cls(
            id=ce["id"],
            type=EventType(etype.removeprefix(TYPE_PREFIX)),
            time=ce.get("time") or datetime.now(UTC),
            data=EventData.model_validate(data),
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Event:
        """Parse a Pub/Sub message body.

        Raises:
            ValueError: the body is not JSON or not a known job event.
        """
        try:
            ce = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"event body is not JSON: {exc}") from exc
        if not isinstance(ce, dict):
            raise ValueError("event body is not a JSON object")
        return cls.from_cloudevent(ce)
