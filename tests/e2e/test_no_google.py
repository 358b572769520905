"""The checks of the executors issue on a machine with no Java and no Google Cloud CLI on the PATH.

Each command runs in a child process whose PATH holds nothing (the ``tributary`` script names its own
interpreter), so neither the emulators nor gcloud can be found: ``make demo``'s command falls back to the
embedded profile saying so in one line, and ``tributary run gdelt`` ingests a slot from a recorded-response
server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.local.recorded import ReplayServer
from common.local.samples import materialize

pytestmark = pytest.mark.e2e
TRIBUTARY = str(Path(sys.executable).parent / "tributary")


def bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("TRIBUTARY_", "PUBSUB_", "FIRESTORE_", "CLOUD_"))}
    return {**keep, "PATH": str(tmp_path / "empty-bin"), "HOME": str(tmp_path), **extra}


def test_demo_falls_back_to_the_embedded_profile_without_the_emulators(tmp_path: Path) -> None:
    (tmp_path / "empty-bin").mkdir()
    done = subprocess.run(
        [TRIBUTARY, "demo", "--timeout", "120"], env=bare_env(tmp_path), cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    said = [line for line in done.stderr.splitlines() if "embedded profile" in line]
    assert len(said) == 1 and ("Java" in said[0] or "emulator" in said[0]), done.stderr
    assert "gdelt_events" in done.stdout and "failed" not in done.stdout


def test_tributary_run_ingests_a_slot_with_no_server_and_no_emulator(tmp_path: Path) -> None:
    (tmp_path / "empty-bin").mkdir()
    with ReplayServer(materialize(tmp_path / "replay")) as replay:
        env = bare_env(tmp_path, TRIBUTARY_GDELT_BASE_URL=f"{replay.url}/gdelt", TRIBUTARY_NO_SECRET_MANAGER="1")
        argv = [TRIBUTARY, "run", "gdelt", "-p", "slot=20240115120000", "-p", "streams=events"]
        done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        again = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        bad = subprocess.run([*argv[:3], "-p", "slot=2024"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded" and job["records"] == 24 and job["trigger"] == "cli"
    assert (tmp_path / ".tributary" / "tributary.sqlite").exists()
    assert json.loads(again.stdout)["job_id"] == job["job_id"] and json.loads(again.stdout)["attempt"] == 1
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
