"""A batch's total is its distinct jobs: two planned children of one job id are one job."""

from __future__ import annotations

from common.runtime.batches import Batch, child_jobs
from common.sources import get_source


def test_children_with_the_same_job_id_are_one_job() -> None:
    source = get_source("reliefweb")
    window = {"since": "2024-01-01T00:00:00Z", "until": "2024-01-08T00:00:00Z"}
    other = {"since": "2024-01-08T00:00:00Z", "until": "2024-01-15T00:00:00Z"}
    jobs = child_jobs(Batch(batch_id="b", kind="backfill"), source, [window, other, dict(window)], trigger="backfill")
    assert len(jobs) == 2 and len({j.job_id for j in jobs}) == 2
