"""The deploy plan and deploy.sh set a TTL policy on expire_at for jobs, event markers and parts, exempt the job
document's maps from indexing, and carry a non-default retention to the functions (checked through --dry-run:
gcloud never runs here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.ops import deploy_plan
from common.settings import reset_settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_plan_has_one_ttl_policy_per_collection_group() -> None:
    plan = deploy_plan.build_plan(project="p-ttl", region="us-central1")
    assert plan.ttls == [("jobs", "expire_at"), ("events", "expire_at"), ("parts", "expire_at")]
    assert ("ttl", "events", "expire_at") in list(plan.records())
    assert all("TRIBUTARY_RETENTION_DAYS" not in fn.env for fn in plan.functions)  # the default needs no variable


def test_a_retention_setting_travels_with_the_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIBUTARY_RETENTION_DAYS", "30")
    reset_settings()
    plan = deploy_plan.build_plan(project="p-ttl", region="us-central1")
    assert {fn.env.get("TRIBUTARY_RETENTION_DAYS") for fn in plan.functions} == {"30"}


def test_deploy_sh_enables_the_ttl_policies_and_exempts_the_marker_maps(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")}
    stub = tmp_path / "gcloud"
    stub.write_text("#!/bin/sh\nexit 97\n")  # never called in --dry-run
    stub.chmod(0o755)
    env.update(PATH=f"{tmp_path}{os.pathsep}{env.get('PATH', '')}", TRIBUTARY_PYTHON=sys.executable)
    done = subprocess.run(
        ["bash", str(ROOT / "deploy.sh"), "--project", "p-ttl", "--region", "us-central1", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    ttl = [line for line in done.stdout.splitlines() if "firestore fields ttls update" in line]
    assert [line.split("--collection-group=")[1].split()[0] for line in ttl] == ["jobs", "events", "parts"]
    assert all(line.startswith("+ gcloud firestore fields ttls update expire_at ") for line in ttl)
    assert all("--enable-ttl" in line and "--project=p-ttl" in line for line in ttl)
    noix = [line for line in done.stdout.splitlines() if "firestore indexes fields update" in line]
    exempt = [(line.split("--collection-group=")[1].split()[0], line.split()[6]) for line in noix]
    assert exempt == [("jobs", "events"), ("jobs", "loads"), ("parts", "markers")]
    assert all("--disable-indexes" in line and "--project=p-ttl" in line for line in noix)
