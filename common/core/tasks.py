"""The task contract every executor carries: a source's queue limits, a job's parts and the task body.

Cloud Tasks, Celery and the embedded executor all deliver a :class:`TaskPayload` and honour the
source's :class:`QueueConfig`; the task id (:func:`task_id`) is derived from the job id, so an executor
that remembers task names refuses a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class QueueConfig:
    """The source's queue settings, matched to the upstream API's published limits."""

    max_dispatches_per_second: float = 1.0
    max_concurrent_dispatches: int = 2
    max_attempts: int = 5
    min_backoff: float = 10.0
    max_backoff: float = 600.0
    max_doublings: int = 4
    #: How long one part may run before the executor gives up on it (15 s to 30 min).
    dispatch_deadline: float = 900.0


class Part(BaseModel):
    """One unit of work of a job. ``key`` is deterministic and names the part's outputs and task."""

    key: str
    index: int = 0
    total: int = 1
    params: dict[str, Any] = {}
    #: The stream (dataset) this part writes, for sources with several (GDELT: events, mentions, gkg).
    stream: str = "default"
    #: Where ``key`` sits in the output tree, e.g. "2019/10/24" (defaults to no sub-folder).
    partition: str = ""
    #: The incremental cursor this part advances (e.g. a FRED series id); its value is ``watermark()``.
    cursor: str | None = None


class TaskPayload(BaseModel):
    """The body of an ingest task."""

    job_id: str
    source: str
    params: dict[str, Any]
    #: None for the job's first task (which plans); a part for the tasks a multi-part plan fans out.
    part: Part | None = None
    #: The job's run this task belongs to (1, then one more per retry); its events carry it.
    run: int = 1


def task_id(job_id: str, part: Part | None = None, run: int = 1) -> str:
    """Deterministic task id: the job id, then ``--run<N>`` for a retry's run (a queue remembers a deleted task's
    name for about an hour, so a new run needs new names), then the part key for fanned-out parts."""
    base = job_id if run <= 1 else f"{job_id}--run{run}"
    if part is None:
        return base
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in part.key)
    return f"{base}--{safe}"[:500]
