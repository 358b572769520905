"""The load stage's record on the job: each delivery's report in the job's ``loads`` map; its ``load`` is their sum."""

from __future__ import annotations

import re
from typing import Any

from common.core.errors import TransientError
from common.core.warehouse import summarize_loads as summarize
from common.gcp.firestore.markers import LOADS_FIELD, field_path
from common.gcp.firestore.query import bounded_call, db
from common.gcp.names import JOBS

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")

__all__ = ["record_load", "summarize"]


def record_load(job_id: str, key: str, report: dict[str, Any]) -> dict[str, Any]:
    """Store ``report`` as the job's ``loads.{key}``: one write, nothing read. The job's ``load`` is the sum of its
    reports, summed when the job is read (``markers.job_of``), so parts loading at once never lose one another's
    report and no sum is rewritten. No transaction on the job document: the status function's transactions hold
    it, and one more per job made it a hot document under a backfill. Idempotent: a redelivery rewrites the same
    entry. Returns this report's summary (the other parts' reports are not read).

    Raises:
        TransientError: the job is not recorded yet (the event is redelivered later).
    """
    from google.api_core.exceptions import NotFound

    job_ref = db().collection(JOBS).document(job_id)
    try:
        job_ref.update({field_path(LOADS_FIELD, _UNSAFE.sub("_", key) or "job"): report}, **bounded_call())
    except NotFound as exc:
        raise TransientError(f"job {job_id} is not recorded yet") from exc
    return summarize([report])
