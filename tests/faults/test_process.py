"""Process faults: the ingest function killed with SIGKILL mid-run, the Firestore emulator restarted mid-run.

**SIGKILL**: a slow upstream answer holds the ingest function inside a task; the test kills the function's
process group with SIGKILL (no handler, no cleanup) and starts it again on the same port
(``Stack.kill``/``Stack.start_again``). The Tasks emulator sees the connection drop, retries with backoff, and
the job must end ``succeeded`` with one Parquet object per part and each event applied once.

**Firestore restart**: the emulator keeps everything in memory, so a restart is an outage *and* the loss of
every document. What is asserted is what must hold of an outage: events published while Firestore is down
are not lost (the status function cannot apply them, Pub/Sub delivers them again) and are applied once when it
is back; the job that was running during the outage ends terminal with its records; jobs created after the
restart complete normally. The jobs stored before the restart are gone: that is the emulator's nature (real
Firestore is durable) and is recorded, not treated as a failure. The running job's document is put back after
the restart (pushes held until then), as durable Firestore would still hold it: the status function ignores
events of jobs it never created.
"""

from __future__ import annotations

import contextlib
import signal
import time
from datetime import UTC, datetime

import pytest

from tests.faults import harness
from tests.faults.harness import FaultStack, gdelt_spec, orphans
from tests.faults.pushproxy import PushProxy

TIERS = [pytest.param("smoke", id="smoke"), pytest.param("full", marks=pytest.mark.faults, id="full")]


def _kill_when_hit(fs: FaultStack, tag: str, timeout: float = 30.0) -> None:
    """SIGKILL the ingest function as soon as the fault tagged ``tag`` holds a request, then start it again."""
    deadline = time.monotonic() + timeout
    while fs.applied(tag) < 1:
        assert time.monotonic() < deadline, f"the fault {tag} was never hit"
        time.sleep(0.05)
    fs.stack.kill("ingest", signal.SIGKILL)
    fs.stack.start_again("ingest")


@pytest.mark.parametrize("tier", TIERS)
def test_ingest_killed_with_sigkill_mid_run(fault_stack: FaultStack, tier: str) -> None:
    fs = fault_stack
    cases = [("killed while downloading", "plain", "events", None)]
    if tier == "full":
        cases += [
            ("killed while planning", "plain", None, "/gdelt/lastupdate.txt"),
            ("killed in one part of two", "two_streams", "mentions", None),
        ]
    for variant, pool, stream, path in cases:
        slot = fs.pools.take(pool)
        streams = ("events", "mentions") if pool == "two_streams" else ("events",)
        spec = gdelt_spec(slot, streams=streams, min_attempt=2)
        tag = f"sigkill-{tier}-{slot}"
        # the answer comes long after the kill: the killed attempt never gets it
        fs.add_faults({"path": path or fs.zip_path(slot, stream or "events"), "mode": "slow", "delay": 5, "times": 1,
                       "tag": tag})  # fmt: skip
        submitted = fs.submit(spec)
        _kill_when_hit(fs, tag)
        figures = fs.check(
            spec,
            submitted,
            fault="ingest function SIGKILLed mid-run",
            variant=("smoke " if tier == "smoke" else "") + variant,
            injected=1,
        )
        assert figures["rejected"] >= 1, "the Tasks emulator saw the killed attempt fail"
    assert not orphans(fs)


@pytest.mark.faults
def test_firestore_restarted_mid_run(request: pytest.FixtureRequest) -> None:
    """Its own stack: the restart loses every document, which would blind the other tests' checks."""
    with contextlib.ExitStack() as cleanup:
        root = cleanup.enter_context(harness.fault_stack_dir(request.session))
        # a read timeout longer than the slow answer below: the job must be mid-run, not timing out
        fs = harness.start_fault_stack(root, env={"TRIBUTARY_HTTP_READ_TIMEOUT": "10"})
        cleanup.callback(harness.stop_fault_stack, fs)
        proxy = PushProxy(fs.endpoints["status_url"]).start(fs.subscriber, fs.project)
        cleanup.callback(proxy.stop, fs.subscriber, fs.project, fs.endpoints["status_url"])

        before = gdelt_spec(fs.pools.take("plain"))
        before_job = fs.submit(before)
        fs.check(before, before_job, fault="Firestore restarted mid-run", variant="job done before", injected=0)

        during = gdelt_spec(fs.pools.take("plain"))
        tag = "firestore-during"
        fs.add_faults({"path": fs.zip_path(during.params["slot"]), "mode": "slow", "delay": 2, "times": 1, "tag": tag})
        submitted_at = time.monotonic()
        during_job = fs.submit(during)
        deadline = time.monotonic() + 30
        while not (fs.applied(tag) and fs.api.get(f"/v1/jobs/{during_job['job_id']}").json()["status"] == "running"):
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        answers_before = len(proxy.answers)
        stored = fs.api.get(f"/v1/jobs/{during_job['job_id']}").json()
        proxy.held.set()  # pushes wait (503, delivered again) until the lost job document is back
        down_at = datetime.now(UTC)
        fs.stack.kill("firestore", signal.SIGKILL)
        time.sleep(3.0)  # the job finishes its download and publishes its outcome during the outage
        fs.stack.start_again("firestore")
        # Real Firestore is durable: put back the job the in-memory emulator lost, as the cloud would still
        # hold it. The status function ignores events of jobs it never created (no phantom job).
        fs.db.collection("jobs").document(stored["job_id"]).set(stored)
        proxy.held.clear()
        outage = (datetime.now(UTC) - down_at).total_seconds()

        # the job that ran through the outage: its outcome was not lost, and was applied once
        job = fs.wait_terminal(during_job["job_id"])
        ended = time.monotonic()
        markers, published = fs.settle(during_job["job_id"])
        after_outage = {i for i, e in published.items() if e.time >= down_at}
        files, rows, temps = fs.parquet_rows(during)
        answers = proxy.answers[answers_before:]
        harness.RESULTS.append(
            {
                "fault": "Firestore restarted mid-run",
                "variant": f"job running through a {outage:.0f} s outage",
                "source": "gdelt",
                "job_id": job["job_id"],
                "injected": 1,
                "expected": "succeeded",
                "status": job["status"],
                "message": (
                    f"{len(answers)} status push(es) during and after the outage: "
                    f"{sum(1 for status, _ in answers if not 200 <= status < 300)} answered non-2xx, "
                    f"the slowest waited {max((t for _, t in answers), default=0.0):.1f} s for Firestore"
                ),
                "attempt": job["attempt"],
                "deliveries": len(fs.deliveries(job["job_id"])[0]),
                "rejected": sum(1 for status, _ in answers if not 200 <= status < 300),
                "copies": 0,
                "rows": rows,
                "expected_rows": harness.GDELT_ROWS,
                "duplicates": max(0, rows - harness.GDELT_ROWS) + max(0, files - 1),
                "orphans": int(job["status"] not in ("succeeded", "failed")) + fs.tasks_left(job["job_id"], "gdelt"),
                "markers": len(markers & after_outage),
                "distinct_events": len(after_outage),
                "seconds": round(ended - submitted_at, 1),
                "ok": False,
            }
        )
        assert job["status"] == "succeeded" and job["records"] == harness.GDELT_ROWS, job
        assert (files, rows, temps) == (1, harness.GDELT_ROWS, []), (files, rows, temps)
        assert after_outage and after_outage <= markers <= set(published), (markers, set(published))
        assert fs.tasks_left(job["job_id"], "gdelt") == 0
        harness.RESULTS[-1]["ok"] = True

        # what was stored before the restart is gone (in-memory emulator): recorded, not a failure
        assert fs.api.get(f"/v1/jobs/{before_job['job_id']}").status_code == 404

        # jobs created after the restart complete normally
        after = gdelt_spec(fs.pools.take("plain"))
        fs.check(after, fs.submit(after), fault="Firestore restarted mid-run", variant="job created after", injected=0)
        assert not orphans(fs)
