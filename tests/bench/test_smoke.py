"""Keeps the benchmark code from rotting: P1's and P3's code paths on the project's 24-row GDELT sample.

Fast (a few seconds): one run per contender, no profiles. The figures are not checked, only that they are
real measurements of the same rows.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.bench.core import Context, Ratio, Stat, measure, measure_interleaved
from tests.bench.data import gdelt_inputs

SAMPLE_ROWS = 24


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return Context(workdir=tmp_path, repo=Path(__file__).resolve().parents[2], quick=True, do_profile=False)


@pytest.fixture
def sample(ctx: Context):
    return gdelt_inputs(ctx.workdir / "in", (1, 10), sample=True)


def test_the_synthetic_exports_have_distinct_event_ids(sample) -> None:
    import zipfile

    with zipfile.ZipFile(sample[10].zip_path) as archive:
        lines = archive.read(archive.namelist()[0]).splitlines()
    assert sample[1].rows == SAMPLE_ROWS and sample[10].rows == len(lines) == 10 * SAMPLE_ROWS
    assert len({line.split(b"\t")[0] for line in lines}) == 10 * SAMPLE_ROWS
    assert all(len(line.split(b"\t")) == 61 for line in lines)


def test_p1_contenders_all_see_the_sample_rows(sample, tmp_path: Path) -> None:
    from tests.bench.gdelt_peer import floor_split, pandas_ingest
    from tests.bench.p1_ingest import tributary_ingest

    f = sample[1]
    assert tributary_ingest(f.zip_path, tmp_path / "t.parquet") == SAMPLE_ROWS
    assert pandas_ingest(f.zip_path, tmp_path / "p.parquet") == SAMPLE_ROWS
    assert floor_split(f.zip_path) == SAMPLE_ROWS
    ours = pq.read_table(tmp_path / "t.parquet")
    assert ours.num_rows == SAMPLE_ROWS and ours.num_columns == 61
    assert ours.column("EventCode").to_pylist() == pq.read_table(tmp_path / "p.parquet").column("EventCode").to_pylist()


def test_p1_section_reports_positive_ratios(ctx: Context, sample) -> None:
    from tests.bench.p1_ingest import p1_ingest

    sec = p1_ingest(ctx, sample)
    assert [row.id for row in sec.rows] == ["P1"] * 3  # 1x vs pandas, 10x vs pandas, 10x vs the floor
    for row in sec.rows:
        ratio = float(row.ratio.split("x")[0])
        assert ratio > 0 and math.isfinite(ratio)
        assert row.met in (True, False)
        assert "rows/s" in row.ours and "(n=3)" in row.ours


def test_p3_child_measures_the_sample(ctx: Context, sample) -> None:
    from tests.bench.p3_memory import peak_rss

    result = peak_rss(sample[1], ctx.workdir / "rss.parquet", ctx.repo)
    assert result["rows"] == SAMPLE_ROWS
    assert 0 < result["baseline_kb"] <= result["peak_kb"] < 2 * 2**20  # under 2 GiB
    assert pq.read_table(ctx.workdir / "rss.parquet").num_rows == SAMPLE_ROWS


def test_measure_helpers_give_medians_spreads_and_paired_ratios() -> None:
    values = iter([3.0, 1.0, 2.0])
    stat = measure(lambda: next(values), 3)
    assert (stat.median, stat.lo, stat.hi) == (2.0, 1.0, 3.0)
    calls: list[str] = []
    stats = measure_interleaved({"a": lambda: calls.append("a") or 2.0, "b": lambda: calls.append("b") or 1.0}, 2)
    assert calls == ["a", "b", "b", "a"]  # the order rotates each round
    r = Ratio.of(stats["a"], stats["b"])
    assert (r.value, r.lo, r.hi) == (2.0, 2.0, 2.0)
    assert Stat([1000.0, 2000.0], "rows/s").fmt() == "1,500 rows/s [1,000-2,000] (n=2)"


def test_p6_counts_and_prices_a_job(ctx: Context) -> None:
    from tests.bench.p9_cost import p9_cost

    sec = p9_cost(ctx)
    by_measure = {row.measure: row for row in sec.rows}
    assert by_measure["Pub/Sub messages per one-part job (published)"].met is True
    assert any(row.ours.startswith("$") for row in sec.rows), "1,000 slot jobs are priced"
    assert "vCPU-s" in next(row.ours for row in sec.rows if "compute measured" in row.measure)


def need_redis() -> None:
    import shutil

    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (the Celery executor's broker)")


def test_each_measure_sends_to_its_own_redis_whatever_ran_before(ctx: Context) -> None:
    """P6 then P7 in one process: each starts its own Redis, and the second one's tasks went to the first's."""
    from common.local.redis import RedisServer
    from tests.bench.p6_p7_celery import bare_celery, bare_celery_noop_seconds

    need_redis()
    before = dict(os.environ)
    for _ in range(2):
        with RedisServer() as redis, bare_celery(ctx, redis.url, 1) as app:
            assert bare_celery_noop_seconds(app, 5) > 0
    assert dict(os.environ) == before


def test_p7_runs_noop_jobs_on_the_celery_profile_and_its_task_function(ctx: Context) -> None:
    from common.local.redis import RedisServer
    from common.runtime import executors
    from common.settings import use_settings
    from tests.bench.celery_profile import celery_noop_jobs, tributary_celery
    from tests.bench.p6_p7_celery import NOOP_QUEUE, worker_side

    need_redis()
    with RedisServer() as redis, tributary_celery(ctx, redis.url, 1, [NOOP_QUEUE]) as ours:
        assert ours.settings.profile == "celery" and executors.chosen(ours.settings) == ("celery", "embedded", "sqlite")
        cpu0 = ours.worker_cpu()
        assert celery_noop_jobs(ours, 5) > 0
        assert ours.worker_cpu() > cpu0, "the worker's process tree is what ran the jobs"
        wall, cpu, frames = worker_side(ours.settings, 6, profiled=True)
        assert wall > 0 and cpu > 0 and "pyinstrument" in frames
        with use_settings(ours.settings):
            assert executors.state(ours.settings).count_by({"source": "noop", "status": "succeeded"}) == 5 + 6


def test_p8_columns_backfill_the_day_on_each_executor(ctx: Context) -> None:
    from common.core.errors import ConfigError
    from common.local.stack import sdk_root
    from tests.bench.p8_backfill import SLOTS, celery_runs, cloudtasks_runs, embedded_run, replay_root, replay_server

    need_redis()
    root, origin = replay_root(ctx, sample=True)
    assert "24 rows" in origin
    with replay_server(root) as url:
        assert os.environ["TRIBUTARY_GDELT_BASE_URL"] == url
        ((seconds, cpu, _),) = [embedded_run(ctx, "2024-01-16")]
        assert seconds > 0 and cpu > 0
        ((seconds, cpu, parts),) = celery_runs(ctx, 1)
        assert seconds > 0 and parts["worker"] > 0 and cpu == parts["worker"] + parts["api"]
    assert "TRIBUTARY_GDELT_BASE_URL" not in os.environ
    try:
        sdk_root()
    except ConfigError as exc:
        pytest.skip(str(exc))
    runs, _ = cloudtasks_runs(ctx, root, 1, 300.0)
    ((seconds, cpu, parts),) = runs
    assert seconds > 0 and cpu > 0 and parts["ingest"] > 0 and SLOTS == 96
