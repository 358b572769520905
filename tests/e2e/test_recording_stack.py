"""``tributary dev up --record DIR``: the stack's jobs go through the recorder to the upstream, and DIR replays."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from common.gcp.secrets import env_name
from common.local.recorded import ReplayServer
from common.local.samples import materialize
from common.local.stack import Stack, StackConfig

pytestmark = pytest.mark.e2e
KEY = "fred-key-never-written"


def test_a_stack_records_what_its_jobs_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ReplayServer(materialize(tmp_path / "samples")) as upstream:  # the "real" API, on 127.0.0.1
        monkeypatch.setenv("TRIBUTARY_FRED_BASE_URL", f"{upstream.url}/fred")
        monkeypatch.setenv(env_name("FRED_API_KEY"), KEY)
        record = tmp_path / "recorded"
        stack = Stack(StackConfig(state_dir=tmp_path / "stack", record_dir=record, auto_ports=True, scheduler=False))
        state = stack.up()
        try:
            with httpx.Client(base_url=state.endpoints["api_url"], timeout=30) as api:
                job_id = api.post("/v1/jobs", json={"source": "fred", "params": {"series": ["DFF"]}}).json()["job_id"]
                deadline = time.monotonic() + 90
                while (job := api.get(f"/v1/jobs/{job_id}").json())["status"] not in ("succeeded", "failed"):
                    assert time.monotonic() < deadline, job
                    time.sleep(0.3)
        finally:
            stack.down()
        assert job["status"] == "succeeded" and job["records"] > 0, job
        fetched = httpx.get(f"{upstream.url}/_replay/hits").json()
    assert fetched.get("/fred/fred/series/observations")  # through the recorder to the upstream
    assert (record / "fred" / "_routes.json").is_file()
    assert KEY not in "".join(p.read_text(errors="replace") for p in record.rglob("*") if p.is_file())
    routes = json.loads((record / "fred" / "_routes.json").read_text())
    observations = next(r for r in routes if r["path"] == "/fred/series/observations")
    with ReplayServer(record) as replay:  # the upstream is gone: the recording answers alone, whatever the key
        query = {**observations["query"], "api_key": "another"}
        again = httpx.get(f"{replay.url}/fred/fred/series/observations", params=query)
    assert again.status_code == 200 and again.json()["observations"]
