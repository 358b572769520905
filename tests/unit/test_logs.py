"""Log lines: JSON with severity, trace and job labels for Cloud Logging; text locally."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.runtime import logs
from common.settings import Settings, use_settings

REPO = Path(__file__).resolve().parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_traceparent_gives_the_trace_and_span() -> None:
    fields = logs.trace_fields({"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}, "p")
    assert fields == {
        logs.TRACE_KEY: f"projects/p/traces/{TRACE_ID}",
        logs.SPAN_KEY: "00f067aa0ba902b7",
        logs.SAMPLED_KEY: True,
    }


def test_cloud_trace_context_is_the_fallback_and_its_span_becomes_hex() -> None:
    fields = logs.trace_fields({"x-cloud-trace-context": f"{TRACE_ID}/255;o=0"}, "p")
    assert fields == {
        logs.TRACE_KEY: f"projects/p/traces/{TRACE_ID}",
        logs.SPAN_KEY: "00000000000000ff",
        logs.SAMPLED_KEY: False,
    }


@pytest.mark.parametrize("value", ["", "garbage", f"00-{'0' * 32}-00f067aa0ba902b7-01", "00-xyz-00f067aa0ba902b7-01"])
def test_a_missing_or_invalid_header_gives_no_trace(value: str) -> None:
    assert logs.trace_fields({"traceparent": value}, "p") == {}


def test_json_lines_carry_severity_trace_and_labels() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tributary.test-logs")
    handler = logs.make_handler("json", stream)
    logger.addHandler(handler)
    try:
        with use_settings(Settings(project="p")):
            logs.bind_request({"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
        logs.bind_job(job_id="gdelt-1", source="gdelt", attempt=2)
        logger.warning("transient: %s", "503")
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["severity"] == "WARNING"
    assert line["message"] == "transient: 503"
    assert line[logs.TRACE_KEY] == f"projects/p/traces/{TRACE_ID}"
    assert line[logs.LABELS_KEY] == {"job_id": "gdelt-1", "source": "gdelt", "attempt": "2"}


def test_format_is_json_on_cloud_run_and_text_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    with use_settings(Settings()):
        monkeypatch.delenv("K_SERVICE", raising=False)
        assert logs.log_format() == "text"
        monkeypatch.setenv("K_SERVICE", "ingest-gdelt")
        assert logs.log_format() == "json"
    with use_settings(Settings(log_format="text")):
        assert logs.log_format() == "text"


def test_the_ingest_function_logs_json_with_the_request_trace() -> None:
    """A fresh interpreter runs the ingest function (functions-framework's app and test client), with the cloud
    setting; a refused task logs a line that must be JSON with severity and the trace of its request."""
    script = (
        "import functions_framework\n"
        "app = functions_framework.create_app(target='ingest', source='functions/ingest.py')\n"
        f"headers = {{'traceparent': '00-{TRACE_ID}-00f067aa0ba902b7-01'}}\n"
        "r = app.test_client().post('/gdelt', data=b'{}', headers=headers)\n"
        "assert r.status_code == 400, r.status_code\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")}
    env.update({"TRIBUTARY_LOG_FORMAT": "json", "TRIBUTARY_AUTH": "off", "TRIBUTARY_PROJECT": "proj-1"})
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    refused = [x for x in lines if "task refused" in x["message"]]
    assert refused, done.stderr
    assert refused[0]["severity"] == "WARNING"
    assert refused[0][logs.TRACE_KEY] == f"projects/proj-1/traces/{TRACE_ID}"
