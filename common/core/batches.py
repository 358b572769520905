"""The batch model: the jobs made by one trigger (a backfill range, run-daily), and its one overall status."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from common.core.inputs import parse_bound
from common.core.jobs import canonical_json

__all__ = ["Batch", "batch_id_for", "overall", "parse_bound"]


class Batch(BaseModel):
    """What a trigger asked for and how many jobs it planned; progress is counted over the jobs, not stored."""

    batch_id: str
    kind: str
    source: str | None = None
    start: str | None = None
    end: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    total: int = 0
    created: int = 0
    reused: int = 0
    job_ids: list[str] = Field(default_factory=list, exclude=True)
    #: Jobs this batch found already made by another trigger: counted with the batch, never re-run.
    reused_ids: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def batch_id_for(kind: str, basis: Any) -> str:
    """A deterministic batch id: the same trigger with the same basis is the same batch."""
    return f"{kind}-{hashlib.sha256(canonical_json(basis)).hexdigest()[:20]}"


def overall(c: dict[str, int], total: int) -> str:
    """One status for a batch: succeeded/failed when every job ended (a cancelled job counts as not succeeded),
    running once any started."""
    stopped = c["failed"] + c.get("cancelled", 0)
    ended = c["succeeded"] + stopped
    if total and ended >= total:
        return "failed" if stopped else "succeeded"
    if ended or c["running"]:
        return "running"
    return "queued"
