"""The load stage's record on the job: ``jobs/{id}/loads/{key}`` per delivery, and their sum in the job's ``load``."""

from __future__ import annotations

import re
from typing import Any

from common.core.errors import TransientError
from common.core.warehouse import summarize_loads as summarize
from common.gcp.firestore.query import bounded_call, db
from common.gcp.names import JOBS, LOADS

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
#: Times the sum is rewritten when reports of other parts land while it is written.
SETTLE_ROUNDS = 3

__all__ = ["record_load", "summarize"]


def record_load(job_id: str, key: str, report: dict[str, Any]) -> dict[str, Any]:
    """Store ``report`` as ``jobs/{job_id}/loads/{key}`` and the job's ``load`` as the sum of them.

    No transaction on the job document: the status function's transactions hold it, and one more per job made
    it a hot document under a backfill. Parts of one job may load at once, so the sum is written, the reports
    read again, and written once more if one landed meanwhile (bounded). Idempotent: a redelivery rewrites the
    same documents.

    Raises:
        TransientError: the job is not recorded yet (the event is redelivered later).
    """
    from google.api_core.exceptions import NotFound

    client = db()
    job_ref = client.collection(JOBS).document(job_id)
    loads = job_ref.collection(LOADS)
    loads.document(_UNSAFE.sub("_", key) or "job").set(report, **bounded_call())
    summary: dict[str, Any] = {}
    seen = -1
    for _ in range(SETTLE_ROUNDS):
        reports = [s.to_dict() for s in loads.stream(**bounded_call())]
        if len(reports) == seen:
            break
        seen, summary = len(reports), summarize(reports)
        try:
            job_ref.update({"load": summary}, **bounded_call())
        except NotFound as exc:
            raise TransientError(f"job {job_id} is not recorded yet") from exc
    return summary
