"""P4: 1,000 no-op jobs through the whole local stack, against the Firestore emulator's own rate for the
same status writes.

The stack is production's: api → Cloud Tasks emulator → ingest → Pub/Sub emulator (push) → status →
Firestore emulator, all as ``tributary dev up`` starts them. The jobs use the no-op source
(``tests/bench/noop.py``, registered with ``TRIBUTARY_EXTRA_SOURCES``), so what is measured is the
pipeline itself.
"""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.bench.core import Context, Ratio, Row, Section, Stat, num, profile

GOAL = 0.8
EXTRA_SOURCES = "tests.bench.noop:Noop"
#: Parallel POSTs (the api function serves 8 threads on 2 cores).
POST_THREADS = 8
POLL = 0.5


@dataclass
class PipelineRun:
    jobs: int
    succeeded: int
    failed: int
    post_seconds: float
    seconds: float
    complete: bool
    lock_timeouts: int
    task_retries: int
    status_errors: int
    #: CPU seconds each part of the stack used during the run (process and its children).
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.succeeded / self.seconds


def cpu_seconds(procs: dict[str, Any]) -> dict[str, float]:
    """User+system CPU seconds so far of each stack process and its children (gunicorn workers, Java)."""
    import psutil

    out = {}
    for name, popen in procs.items():
        total = 0.0
        try:
            root = psutil.Process(popen.pid)
            for proc in [root, *root.children(recursive=True)]:
                t = proc.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
        out[name] = total
    return out


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def log_count(path: Path, needle: str) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(line.count(needle.encode()) for line in f)


def counts(project_env: dict[str, str], run: str) -> tuple[int, int]:
    """(succeeded, failed) jobs of one run, by aggregation queries on the emulator."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    from common.gcp.clients import firestore

    out = []
    for status in ("succeeded", "failed"):
        query = (
            firestore()
            .collection("jobs")
            .where(filter=FieldFilter("params.run", "==", run))
            .where(filter=FieldFilter("status", "==", status))
        )
        out.append(int(query.count().get()[0][0].value))
    return out[0], out[1]


def pipeline_run(state: Any, procs: dict[str, Any], logs: Path, n: int, cap: float) -> PipelineRun:
    """POST ``n`` no-op jobs and wait (at most ``cap`` s) until every one has succeeded or failed."""
    run = uuid.uuid4().hex[:10]
    cpu_before = cpu_seconds(procs)
    before = {
        "lock": log_count(logs / "firestore.log", "Transaction lock timeout"),
        "retry": log_count(logs / "tasks.log", "-> retry"),
        "status": log_count(logs / "status.log", "Traceback"),
    }
    with httpx.Client(base_url=state.endpoints["api_url"], timeout=60, trust_env=False) as api:

        def post(i: int) -> None:
            r = api.post("/v1/jobs", json={"source": "noop", "params": {"run": run, "n": i}})
            if r.status_code != 202:
                raise AssertionError(f"POST /v1/jobs answered {r.status_code}: {r.text}")

        start = time.perf_counter()
        with ThreadPoolExecutor(POST_THREADS) as pool:
            list(pool.map(post, range(n)))
        posted = time.perf_counter() - start
    succeeded = failed = 0
    deadline = start + cap
    while time.perf_counter() < deadline:
        succeeded, failed = counts(state.env, run)
        if succeeded + failed >= n:
            break
        time.sleep(POLL)
    elapsed = time.perf_counter() - start
    cpu_after = cpu_seconds(procs)
    return PipelineRun(
        jobs=n,
        succeeded=succeeded,
        failed=failed,
        post_seconds=posted,
        seconds=elapsed,
        complete=succeeded + failed >= n,
        lock_timeouts=log_count(logs / "firestore.log", "Transaction lock timeout") - before["lock"],
        task_retries=log_count(logs / "tasks.log", "-> retry") - before["retry"],
        status_errors=log_count(logs / "status.log", "Traceback") - before["status"],
        cpu={name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after},
    )


def status_writes(job_id: str, run: str) -> None:
    """What Firestore sees for one no-op job: the api's create, then the status function's two transactions."""
    from common.core.events import Event, EventData, EventType, PartProgress
    from common.core.jobs import Job
    from common.gcp.firestore import create_job, record_event

    create_job(Job(job_id=job_id, source="noop", params={"run": run}))
    data = EventData(job_id=job_id, source="noop", attempt=1)
    record_event(Event.make(EventType.started, data.model_copy(update={"progress": PartProgress(done=0, total=1)})))
    record_event(Event.make(EventType.succeeded, data.model_copy(update={"records": 0})))


def peer_run(firestore_host: str, n: int, threads: int = 1) -> tuple[float, int]:
    """Seconds for ``n`` jobs' status writes straight to the emulator (``threads`` at once), and failures."""
    from common.local.stack import client_env

    run = uuid.uuid4().hex[:10]
    failures = 0
    with client_env({"FIRESTORE_EMULATOR_HOST": firestore_host, "TRIBUTARY_PROJECT": f"p4-peer-{run}"}):
        status_writes(f"noop-{run}-warm", run)

        def one(i: int) -> bool:
            try:
                status_writes(f"noop-{run}-{i}", run)
                return True
            except ValueError:  # "Failed to commit transaction in 5 attempts" (contention)
                return False

        start = time.perf_counter()
        if threads == 1:
            results = [one(i) for i in range(n)]
        else:
            with ThreadPoolExecutor(threads) as pool:
                results = list(pool.map(one, range(n)))
        seconds = time.perf_counter() - start
        failures = results.count(False)
    return seconds, failures


def p4_stack(ctx: Context) -> Section:
    from common.local.stack import Stack, StackConfig, client_env
    from common.sources import source_names

    sec = Section("P4", "1,000 no-op jobs through the whole local stack")
    if "noop" not in source_names():
        raise RuntimeError(f"TRIBUTARY_EXTRA_SOURCES={EXTRA_SOURCES} must be set before common.sources is imported")
    n = 200 if ctx.quick else 1000
    cap = 60.0 if ctx.quick else 240.0
    budget = 90.0 if ctx.quick else 330.0
    env = {"TRIBUTARY_EXTRA_SOURCES": EXTRA_SOURCES, "PYTHONPATH": str(ctx.repo), "TRIBUTARY_LOG_LEVEL": "WARNING"}
    stack = Stack(StackConfig(state_dir=ctx.workdir / "p4-stack", auto_ports=True, scheduler=False, env=env))
    began = time.monotonic()
    state = stack.up()
    up_seconds = time.monotonic() - began
    logs = ctx.workdir / "p4-stack" / "logs"
    runs: list[PipelineRun] = []
    peers: list[float] = []
    peer_cpu: list[float] = []  # CPU seconds per job: Firestore emulator + this process
    try:
        firestore_host = state.endpoints["firestore_emulator_host"]
        peer_run(firestore_host, 20)  # warm-up: client, channel, emulator JIT
        with client_env(state.env):
            while len(runs) < ctx.reps(3, 1):
                spent = time.monotonic() - began
                per_round = spent / len(runs) if runs else 0.0
                if runs and spent + per_round > budget:
                    break
                cpu0 = cpu_seconds({"firestore": stack.procs["firestore"]})["firestore"] + own_cpu()
                seconds, _ = peer_run(firestore_host, n)
                cpu1 = cpu_seconds({"firestore": stack.procs["firestore"]})["firestore"] + own_cpu()
                peers.append(n / seconds)
                peer_cpu.append((cpu1 - cpu0) / n)
                runs.append(pipeline_run(state, stack.procs, logs, n, cap))
        contention = peer_run(firestore_host, 100, threads=2) if ctx.do_profile else None
        peer_profile = (
            profile(lambda: peer_run(firestore_host, 100), repeats=1, top=14, flat=True) if ctx.do_profile else ""
        )
    finally:
        stack.down()

    ours = Stat([r.rate for r in runs], "jobs/s")
    peer = Stat(peers, "jobs/s")
    r = Ratio.of(ours, peer)
    incomplete = [x for x in runs if not x.complete]
    note = ""
    if incomplete:
        note = (
            f"{len(incomplete)} of {len(runs)} run(s) hit the {cap:.0f} s cap: the rate is jobs succeeded by then "
            f"({', '.join(f'{x.succeeded:,}/{x.jobs:,}' for x in incomplete)}) over {cap:.0f} s"
        )
    if len(runs) < 3:
        note += ("; " if note else "") + f"only {len(runs)} run(s) fit the {budget:.0f} s budget of this measure"
    sec.rows.append(
        Row("P4", f"{n:,} no-op jobs, first POST to last succeeded", ours.fmt(), peer.fmt(), r.fmt(),
            f"≥{GOAL:.0%} of Firestore's own rate", r.value >= GOAL, note)
    )  # fmt: skip
    sec.method = (
        f"`tributary dev up`'s stack (`common.local.stack.Stack`, free ports, no scheduler) with the no-op source "
        f"registered through `TRIBUTARY_EXTRA_SOURCES` in the api, ingest and status functions and in this "
        f"process; stack start-up took {up_seconds:.0f} s (not counted). **ours**: {n:,} `POST /v1/jobs` "
        f"({POST_THREADS} client threads), timed from the first POST until an aggregation query (every "
        f"{POLL} s) counts all {n:,} jobs `succeeded`; at most {cap:.0f} s per run. The no-op queue allows "
        "500 dispatches/s and 64 concurrent. **peer**: on the same Firestore emulator (another project), the "
        f"same writes for {n:,} jobs called directly: `common.gcp.firestore.create_job`, then `record_event` for the "
        "`started` and `succeeded` events (the status function's transaction, marker included), one job "
        "after another. Each round runs the peer, then the pipeline."
    )
    sec.details = "Per run:\n\n" + "\n".join(
        f"- run {i + 1}: {x.succeeded:,} succeeded, {x.failed:,} failed of {x.jobs:,} in {x.seconds:.1f} s "
        f"(POSTs answered in {x.post_seconds:.1f} s); Firestore emulator 'Transaction lock timeout': "
        f"{x.lock_timeouts:,}; Cloud Tasks retries: {x.task_retries:,}; status function tracebacks: "
        f"{x.status_errors:,}"
        for i, x in enumerate(runs)
    )
    cpu_lines = []
    for x in runs:
        done = max(x.succeeded, 1)
        total = sum(x.cpu.values())
        parts = ", ".join(f"{k} {v / done * 1000:.0f}" for k, v in sorted(x.cpu.items(), key=lambda kv: -kv[1]))
        cpu_lines.append(
            f"- run {runs.index(x) + 1}: {total / done * 1000:.0f} ms of CPU per job ({parts}); the stack used "
            f"{total / x.seconds:.2f} of the machine's {os.cpu_count()} CPUs over the run"
        )
    sec.details += "\n\nCPU per job by stack process (psutil, process and children, ms):\n\n" + "\n".join(cpu_lines)
    if r.value < GOAL and ctx.do_profile and contention is not None:
        lock = sum(x.lock_timeouts for x in runs)
        c_seconds, c_failed = contention
        post = Stat([x.post_seconds for x in runs], "s")
        ours_cpu = sorted(sum(x.cpu.values()) / max(x.succeeded, 1) for x in runs)[len(runs) // 2]
        used = sorted(sum(x.cpu.values()) / x.seconds for x in runs)[len(runs) // 2]
        p_cpu = sorted(peer_cpu)[len(peer_cpu) // 2]
        cores = os.cpu_count() or 1
        waiting = ": it is mostly *waiting* on locks, not computing" if used < 0.7 * cores else ""
        parts = [
            f"Where the time goes: the api accepts all {n:,} POSTs in {num(post.median)} s, and Cloud Tasks and "
            f"ingest keep up; jobs then wait for the status function, to which the Pub/Sub emulator pushes at "
            f"most two events at a time (docs/google-quirks.md). During the pipeline runs the Firestore "
            f"emulator logged {lock:,} 'Transaction lock timeout' failures. The stack used {used:.2f} of "
            f"{cores} CPUs{waiting}.",
            "Contention in the status path (`common/gcp/firestore.py`):\n\n"
            "1. *Fixed.* Every `record_event` transaction used to read `sources/{name}`, so all status "
            "transactions of one source contended on one document (with 2 threads, the same calls made "
            f"directly: 100 jobs took {c_seconds:.1f} s, {c_failed} failing after 5 commit attempts). A "
            "finished job now writes its own run record, and the source document is touched only when a "
            "job moves its watermark or a cursor forward.\n"
            "2. *Fixed.* The ingest function publishes `job.started` and `job.succeeded` within "
            "milliseconds, and Pub/Sub pushed both at once, so the two transactions of one job contended on "
            "`jobs/{id}` (about 140 lock timeouts per 1,000 jobs, each a one-second redelivery). Events now "
            "carry the job id as ordering key and `status-push` delivers in order.",
            "Profile of the peer (the same status writes one job at a time; pyinstrument, 100 jobs): a job's "
            "status costs two transactions of begin + reads + commit, most of it gRPC round trips:\n\n```\n"
            + peer_profile
            + "\n```",
            STORE_PROPOSAL,
        ]
        done = max(sum(x.succeeded for x in runs), 1)
        per_job = {k: sum(x.cpu.get(k, 0.0) for x in runs) / done * 1000 for k in runs[0].cpu}
        top, top_ms = max(per_job.items(), key=lambda kv: kv[1])
        parts.append(f"The largest CPU cost per job is the {top} process ({top_ms:.0f} ms, all runs). {CPU_NOTES}")
        ceiling = cores / ours_cpu  # jobs/s if every CPU of the machine did nothing but this pipeline
        if ceiling / peer.median < GOAL:
            parts.append(
                "**Why 80% stays out of reach on this machine even then:** the whole stack spends "
                f"{ours_cpu * 1000:.0f} ms of CPU per job (details above: api, ingest, status, the two Google "
                f"emulators, the Tasks emulator), so {cores} CPUs run it at {ceiling:.0f} jobs/s at most: "
                f"{ceiling / peer.median:.0%} of the peer's {peer.median:.0f} jobs/s. The peer spends "
                f"{p_cpu * 1000:.0f} ms of CPU per job (Firestore emulator + client) and, one job at a time, "
                f"uses about {p_cpu * peer.median:.1f} CPUs. The goal compares the pipeline with one of its own "
                "stages run alone; it can hold only where the stages run on separate machines, as in Google "
                "Cloud."
            )
        sec.analysis = "\n\n".join(parts)
    return sec


STORE_PROPOSAL = """\
**Applied:** the source document is out of the per-event transaction (`common/gcp/firestore.py`:
`update_source`): one run record per finished job (`sources/{name}/runs/{job_id}`), last status and last
success read back by query, watermark and cursors advanced only when a job moves them. This took P4 from
about 3-4 jobs/s to about 10 jobs/s.

**Applied:** job events are published with `ordering_key=job_id` (`PublisherOptions(enable_message_ordering=True)`)
and `status-push` is created with `enable_message_ordering=True` (local stack and `deploy.sh`), so one job's
events reach the status function one after another: no lock timeouts left. After a failed publish the client
pauses the key; `common/gcp/pubsub.py` resumes it and tries once more (`tests/integration/test_pubsub.py`).
"""

CPU_NOTES = """\
Cut from the CPU of a no-op job (profiled in process against the emulators with pyinstrument): every
task built an httpx client, and httpx loads the CA bundle into a new TLS context for each (about 25 ms of
the ingest function's 48); one context per process is now shared (`common.sources.http.tls_context`). The source
state (a document read and two queries) is read when a source first asks for it, so a task that never
looks at it reads nothing. The publisher waited 10 ms to fill batches that, with one ordering key per job,
never hold more than one event (now 1 ms). A rate limiter's timer thread is started only when the source
has a rate. In the status function, an event's transaction reads the job and its marker in one `get_all`,
the terminal event writes the job's run record inside that transaction, and the source document is not
read when the job reports neither a watermark nor a cursor: 6 Firestore calls per job instead of 10 (the
peer runs the same code, so it got faster too)."""
