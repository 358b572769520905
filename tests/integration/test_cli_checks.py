"""The CLI as an operator meets it: one line per failure without a stack or credentials, the target announced,
``jobs list --json`` for pipes, progress lines off a terminal, and no schedule pointed at loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.ops.cli import app
from common.sources import get_source

REPO = Path(__file__).resolve().parents[2]
TRIBUTARY = str(Path(sys.executable).with_name("tributary"))

#: Every command that reaches a deployment, with valid arguments.
COMMANDS = [
    ["jobs", "list"],
    ["jobs", "get", "gdelt-x"],
    ["jobs", "submit", "gdelt", "-p", "streams=events,mentions"],
    ["jobs", "follow", "gdelt-x"],
    ["sources"],
    ["sources", "gdelt"],
    ["backfill", "gdelt", "--start", "2024-01-16", "--end", "2024-01-16"],
    ["schedule", "diff"],
    ["schedule", "sync", "--dry-run"],
    ["dlq", "list"],
    ["dlq", "replay"],
    ["reap", "--dry-run"],
    ["secrets", "set", "FRED_API_KEY", "v"],
]


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No local stack, no project, no Google credentials, and never the metadata server."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    for name in (
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "CLOUDSDK_CORE_PROJECT",
        "TRIBUTARY_API_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("TRIBUTARY_NO_SECRET_MANAGER", raising=False)


def _one_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    assert len(errors) == 1 and len(lines) <= 2, result.output  # "target: ..." and the error
    return errors[0]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_without_a_stack_every_command_answers_in_one_line(bare, command: list[str]) -> None:
    line = _one_line(CliRunner().invoke(app, command))
    assert "tributary dev up" in line


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_without_credentials_every_command_answers_in_one_line(bare, command: list[str]) -> None:
    result = CliRunner().invoke(app, ["--project", "no-such-project-1", *command])
    _one_line(result)
    assert "target: project no-such-project-1" in result.output


def test_debug_keeps_the_traceback(bare) -> None:
    result = CliRunner().invoke(app, ["--debug", "--project", "no-such-project-1", "dlq", "list"])
    assert result.exit_code != 0 and result.exception is not None
    assert type(result.exception).__name__ == "DefaultCredentialsError"


def test_schedule_sync_refuses_loopback_for_a_real_project(bare) -> None:
    result = CliRunner().invoke(
        app, ["--project", "prod-1", "schedule", "sync", "--api-url", "http://127.0.0.1:8080", "--dry-run"]
    )
    assert result.exit_code == 2 and "loopback" in result.output, result.output


# --------------------------------------------------------------------- against a small API on loopback
JOB = {
    "job_id": "gdelt-" + "a" * 40,
    "source": "gdelt",
    "status": "succeeded",
    "attempt": 1,
    "records": 3,
    "created_at": "2026-12-03T10:00:00Z",
    "error": None,
    "progress": None,
}


@pytest.fixture
def api() -> Iterator[str]:
    polls = {"n": 0}
    gdelt = get_source("gdelt")
    source = {
        "name": "gdelt",
        "description": "GDELT",
        "schedule": {"cron": "*/15 * * * *", "time_zone": "UTC"},
        "params_schema": gdelt.params_model.model_json_schema(),
        "last_status": None,
        "last_success_at": None,
        "watermark": None,
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/v1/jobs/"):
                polls["n"] += 1
                body = {**JOB, "status": "running" if polls["n"] < 3 else "succeeded"}
            elif self.path.startswith("/v1/jobs"):
                body = {"jobs": [JOB]}
            else:
                body = {"sources": [source]}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(5)


def _run(*args: str, api_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRIBUTARY_API_URL": api_url}
    return subprocess.run([TRIBUTARY, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_jobs_list_json_pipes_with_full_ids(api: str) -> None:
    done = _run("jobs", "list", "--json", api_url=api)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["job_id"] == JOB["job_id"]
    assert done.stderr.startswith("target: ")
    table = _run("jobs", "list", api_url=api)
    assert JOB["job_id"] in table.stdout, "ids are never cut"


def test_follow_prints_progress_lines_off_a_terminal(api: str) -> None:
    done = _run("jobs", "follow", JOB["job_id"], api_url=api)
    assert done.returncode == 0, done.stderr
    assert f"{JOB['job_id']}: running, attempt 1" in done.stderr
    assert f"{JOB['job_id']}: succeeded, attempt 1" in done.stderr


def test_a_source_lists_its_params_and_next_runs(api: str) -> None:
    done = _run("sources", "gdelt", api_url=api)
    assert done.returncode == 0, done.stderr
    assert "streams" in done.stdout and "next runs" in done.stdout
    missing = _run("sources", "nope", api_url=api)
    assert missing.returncode == 1 and "one of gdelt" in missing.stderr
