"""What the functions log: each submission with its job id at INFO, a transient failure at WARNING."""

from __future__ import annotations

import logging

import pytest

from common.local.ports import free_port
from common.runtime import logs
from tests.integration.test_functions import api, ingest, task

__all__ = ["api", "ingest"]  # fixtures


def test_the_api_logs_each_submission_with_its_job_id(api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tributary.api")
    job = api.post("/v1/jobs", json={"source": "gdelt", "params": {"slot": "20240115120000"}}).get_json()
    lines = [r for r in caplog.records if r.name == "tributary.api" and job["job_id"] in r.getMessage()]
    assert lines and lines[0].levelno == logging.INFO and "submitted" in lines[0].getMessage()


def test_a_transient_failure_logs_a_warning_labelled_with_its_job(ingest, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tributary.ingest")
    client = ingest(base_url=f"http://127.0.0.1:{free_port()}/gdelt")
    r = client.post("/gdelt", data=task(job_id="gdelt-logs"), headers={"X-CloudTasks-TaskRetryCount": "1"})
    assert r.status_code == 503
    transient = [r for r in caplog.records if "transient" in r.getMessage() and "gdelt-logs" in r.getMessage()]
    assert transient and all(r.levelno == logging.WARNING for r in transient)
    labels = logs._context.get() or {}
    assert labels.get(logs.LABELS_KEY) == {"job_id": "gdelt-logs", "source": "gdelt", "attempt": "2"}
