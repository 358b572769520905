"""P9: what a job costs, by kind (``common.core.cost``): the deterministic counts per no-op job and per GDELT slot,
the slot's compute measured in a fresh process, and 1,000 GDELT slot jobs priced on Google Cloud."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

from tests.bench.core import Context, Row, Section
from tests.bench.data import gdelt_inputs, have_real_slot

GOAL_FIRESTORE = 6
GOAL_MESSAGES = 2
SLOT_JOBS = 1000

#: Runs the production path of a GDELT events part (as P1) in a fresh interpreter, metered as the ingest
#: function meters a task (``common.runtime.usage``): CPU and wall time of the work, the process's peak RSS.
MEASURE = """
import json, sys
from pathlib import Path
from common.runtime.usage import Meter
from tests.bench.p1_ingest import tributary_ingest
meter = Meter.start()
tributary_ingest(Path(sys.argv[1]), Path(sys.argv[2]))
print(json.dumps(meter.read()))
"""


def job_like(source: str, outputs: list[str], usage: dict[str, float] | None) -> object:
    """A succeeded one-part job of ``source`` with these outputs, as the status function leaves it."""
    from common.core.jobs import Job, JobStatus, Progress

    now = datetime.now(UTC)
    return Job(
        job_id=f"{source}-bench", source=source, status=JobStatus.succeeded, attempt=1, started_at=now,
        finished_at=now, progress=Progress(done=1, total=1), outputs=outputs, usage=usage,
    )  # fmt: skip


def measured_slot(ctx: Context) -> tuple[dict[str, float], str]:
    """The compute of one GDELT slot's ingest, measured in a fresh process; and which file it was."""
    inputs = gdelt_inputs(ctx.workdir / "p6", (1,), sample=False)
    f = inputs[1]
    out = ctx.workdir / "p6-out.parquet"
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(f.zip_path), str(out)],
        cwd=ctx.repo, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    label = f"{'the real slot' if have_real_slot() else 'a slot-sized file'} ({f.rows:,} rows)"
    return json.loads(done.stdout.strip().splitlines()[-1]), label


def p9_cost(ctx: Context) -> Section:
    from common.core.cost import Usage, billed, job_cost, listed, usage_of
    from common.core.prices import AS_OF

    sec = Section("P9", "Cost per job: counts by kind, measured compute, priced at list prices")
    noop = job_like("noop", ["file:///data/normalized/noop/default/partition=0/0.parquet"], None)
    counts = usage_of(noop)  # type: ignore[arg-type]
    fs_ops = counts.firestore_operations
    sec.rows.append(
        Row("P9", "Firestore operations per no-op job (reads + writes)", f"{fs_ops:g} "
            f"({counts.firestore_reads:g} + {counts.firestore_writes:g})", "", "", f"≤ {GOAL_FIRESTORE}",
            fs_ops <= GOAL_FIRESTORE)
    )  # fmt: skip
    sec.rows.append(
        Row("P9", "Pub/Sub messages per one-part job (published)", f"{counts.pubsub_messages:g}", "", "",
            f"≤ {GOAL_MESSAGES}", counts.pubsub_messages <= GOAL_MESSAGES,
            f"each delivered to 2 subscriptions: {counts.pubsub_bytes:,.0f} billable bytes")
    )  # fmt: skip
    sec.rows.append(
        Row("P9", "Cloud Tasks operations / function invocations per job",
            f"{counts.tasks_operations:g} / {counts.function_invocations:g}", "", "", "", None)
    )  # fmt: skip

    usage, label = measured_slot(ctx)
    slot = job_like(
        "gdelt",
        [
            "gs://b/raw/gdelt/events/dt=2019-10-24/20191024143000.export.CSV.zip",
            "gs://b/normalized/gdelt/events/dt=2019-10-24/20191024143000.events.parquet",
            "gs://b/normalized/gdelt/events/schema.json",
        ],
        usage,
    )
    one = job_cost(slot)  # type: ignore[arg-type]
    sec.rows.append(
        Row("P9", f"GDELT slot job: compute measured, {label}",
            f"{usage['cpu_seconds']:.3f} vCPU-s, {usage['gib_seconds']:.4f} GiB-s", "", "", "", None,
            f"peak RSS {usage['peak_rss_bytes'] / 2**20:.0f} MiB over {usage['wall_seconds']:.3f} s")
    )  # fmt: skip
    total = Usage()
    per_job = usage_of(slot)  # type: ignore[arg-type]
    for _ in range(SLOT_JOBS):
        total = total + per_job
    sec.rows.append(
        Row("P9", f"{SLOT_JOBS:,} GDELT slot jobs on Google Cloud (list prices of {AS_OF})",
            f"${listed(total):.4f}", "", "", "", None,
            f"${one['total_usd']:.7f} a job; ${billed(total):.2f} after the monthly free tiers")
    )  # fmt: skip
    lines = "\n".join(
        f"| {line['what']} | {line['quantity'] * SLOT_JOBS:,.0f} {line['unit']} | ${line['usd'] * SLOT_JOBS:.5f} |"
        for line in one["lines"]
    )
    sec.method = (
        "Counts come from `common.core.cost.usage_of`, the model of the path a job takes (docs/cost.md): they are the "
        "same for every job that did the same, so they are figures, not samples. The compute is measured: the "
        "GDELT events part's production code (P1's) runs in a fresh interpreter under `common.runtime.usage.Meter`, "
        "as the ingest function meters a task (CPU time of the work, peak RSS of the process including its imports, "
        "times the wall time). Prices: `common/core/prices.py`.\n\n"
        f"{SLOT_JOBS:,} GDELT slot jobs, by kind:\n\n| kind | quantity | cost |\n|---|---|---|\n{lines}\n"
    )
    if fs_ops > GOAL_FIRESTORE:
        sec.analysis = (
            f"- **Firestore ≤ {GOAL_FIRESTORE} per job is not met ({fs_ops:g})**. Where they go: the api's create "
            "(1 write); the ingest's read of the job before it runs (1 read); the status function's transaction per "
            "event, 2 events (the job read, the job written with the event's marker in it: 4); the deciding event's "
            "run record (1 write); the load stage's report in the job (1 write). "
            "`tests/integration/test_firestore_ops.py` counts these on the emulator. What would cut them further: "
            "fold the `started` event into the outcome for a one-part job (-2, in the ingest: the job would show "
            "`queued` until it ends), and answer a source's last runs from a query on jobs instead of its run "
            "records (-1, but jobs expire after the retention and run records do not). At list prices Firestore "
            "is about two fifths of a slot job's cost, its writes most of it.\n"
        )
    return sec
