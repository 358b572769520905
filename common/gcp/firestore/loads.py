"""The load stage's record on the job: ``jobs/{id}/loads/{key}`` per delivery and their sum in the job's ``load``."""

from __future__ import annotations

import re
from typing import Any

from common.core.errors import TransientError
from common.gcp.firestore.query import bounded_call, db
from common.gcp.names import JOBS, LOADS

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def summarize(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One job's ``load``: failed if any report failed; rows and bytes summed; every table's outcome."""
    failed = [r for r in reports if r.get("status") == "failed"]
    summary: dict[str, Any] = {
        "status": "failed" if failed else "loaded",
        "warehouse": next((r.get("warehouse") for r in reports if r.get("warehouse")), ""),
        "rows": sum(int(r.get("rows", 0)) for r in reports),
        "bytes": sum(int(r.get("bytes", 0)) for r in reports),
        "tables": sorted((t for r in reports for t in r.get("tables", [])), key=lambda t: t.get("output", "")),
    }
    if failed:
        summary["error"] = failed[0].get("error", "")
    return summary


def record_load(job_id: str, key: str, report: dict[str, Any]) -> dict[str, Any]:
    """Store ``report`` as ``jobs/{job_id}/loads/{key}`` and the job's ``load`` as the sum of them, in one
    transaction (parts of one job load concurrently). Idempotent: a redelivery rewrites the same documents.

    Raises:
        TransientError: the job is not recorded yet (the event is redelivered later).
    """
    from google.cloud import firestore as fs

    client = db()
    job_ref = client.collection(JOBS).document(job_id)
    loads = job_ref.collection(LOADS)
    own = loads.document(_UNSAFE.sub("_", key) or "job")

    @fs.transactional
    def txn(transaction: Any) -> dict[str, Any]:
        job = job_ref.get(transaction=transaction, **bounded_call())
        if not job.exists:
            raise TransientError(f"job {job_id} is not recorded yet")
        others = [s.to_dict() for s in loads.stream(transaction=transaction, **bounded_call()) if s.id != own.id]
        summary = summarize([*others, report])
        transaction.set(own, report)
        transaction.update(job_ref, {"load": summary})
        return summary

    result: dict[str, Any] = txn(client.transaction())
    return result
