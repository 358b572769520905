"""P1: GDELT export ingest (unzip, parse, normalize, write Parquet) in rows/s, against pandas and the floor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.bench.core import Context, Ratio, Row, Section, Stat, measure_interleaved, profile, timed
from tests.bench.data import GdeltFile, gdelt_inputs, have_real_slot
from tests.bench.gdelt_peer import floor_split, pandas_ingest, unzip_only

GOAL_PANDAS = 4.0
GOAL_FLOOR = 0.6


def tributary_ingest(zip_path: Path, out_path: Path) -> int:
    """Exactly what production runs for a GDELT events part (``run_part``): parse_tsv → write_parquet."""
    from common.runtime.ingest import write_parquet
    from common.sources.gdelt import EVENTS, parse_tsv

    with zip_path.open("rb") as stream:
        records, _skipped = write_parquet(parse_tsv(stream, EVENTS, label=zip_path.name), EVENTS, out_path)
    return records


def tributary_parse_only(zip_path: Path) -> int:
    """The parse half of the production path alone (batches counted, nothing written)."""
    from common.sources.gdelt import EVENTS, parse_tsv

    with zip_path.open("rb") as stream:
        return sum(batch.num_rows for batch in parse_tsv(stream, EVENTS, label=zip_path.name))


def floor_note(write_ms: float, floor_ms: float, *, met: bool) -> str:
    """What was done about the floor goal, and what was tried and not kept."""
    applied = (
        "Applied: `write_parquet` gathers Arrow batches into row groups of about 16 MiB "
        "(`common.runtime.ingest.ROW_GROUP_BYTES`). It used to write a row group per ~1 MiB parsed batch, and on the "
        "10x file nine small row groups took 59 ms and 1.7 MB where one takes about 36 ms and 0.6 MB (each "
        "column chunk carries its own dictionary and statistics)."
    )
    tried = (
        "Tried, not kept: (a) parsing the next Arrow block on a thread while the previous one is written: "
        "about 15% faster when the machine was quiet and *slower* when it was busy (no spare core on 2); "
        "(b) `use_threads`/block sizes 1-16 MiB: within noise; (c) `write_statistics=False`: drops the column "
        "statistics that BigQuery and DuckDB use to prune."
    )
    head = f"- **≥{GOAL_FLOOR:.0%} of the floor** (≤{floor_ms / GOAL_FLOOR:.0f} ms) is {'met' if met else 'not met'}"
    return f"{head}; the Parquet write takes {write_ms:.0f} ms of it. {applied} {tried}\n"


def contenders(f: GdeltFile, out: Path) -> dict[str, Callable[[], int]]:
    """Each contender ingests ``f`` and returns the rows it saw (checked equal before timing)."""
    return {
        "tributary": lambda: tributary_ingest(f.zip_path, out / "tributary.parquet"),
        "pandas": lambda: pandas_ingest(f.zip_path, out / "pandas.parquet"),
        "floor": lambda: floor_split(f.zip_path),
        "pandas engine=pyarrow (info)": lambda: pandas_ingest(f.zip_path, out / "pandas-pa.parquet", engine="pyarrow"),
        "unzip only (info)": lambda: unzip_only(f.zip_path) and f.rows,
        "tributary parse only, no write (info)": lambda: tributary_parse_only(f.zip_path),
    }


def run_file(f: GdeltFile, out: Path, repeats: int) -> dict[str, Stat]:
    """rows/s of every contender on ``f``, interleaved; the row counts are checked first."""
    out.mkdir(parents=True, exist_ok=True)
    fns = contenders(f, out)
    counts = {}
    for name, fn in list(fns.items()):  # also the warm-up round
        try:
            counts[name] = fn()
        except Exception as exc:
            if not name.endswith("(info)"):
                raise
            print(f"  {name} dropped on {f.zip_path.parent.name}: {type(exc).__name__}: {exc}")
            del fns[name]
    wrong = {name: n for name, n in counts.items() if n != f.rows}
    if wrong:
        raise AssertionError(f"{f.zip_path.name}: expected {f.rows} rows, got {wrong}")
    seconds = measure_interleaved({name: timed(fn) for name, fn in fns.items()}, repeats)
    return {name: s.map(lambda t, n=f.rows: n / t, "rows/s") for name, s in seconds.items()}


def p1_ingest(ctx: Context, inputs: dict[int, GdeltFile] | None = None) -> Section:
    sec = Section("P1", "GDELT export ingest (unzip, parse, normalize, write Parquet)")
    given = inputs is not None
    inputs = inputs or gdelt_inputs(ctx.workdir / "p1", (1, 10))
    real = not given and have_real_slot()
    repeats = ctx.reps(9, 3)
    results = {scale: run_file(f, ctx.workdir / f"p1-out-x{scale}", repeats) for scale, f in inputs.items()}

    big = max(inputs)
    for scale, stats in results.items():
        ours, pandas = stats["tributary"], stats["pandas"]
        name = "real slot" if scale == 1 and real else f"{scale}x file" if scale > 1 else "1x file"
        r = Ratio.of(ours, pandas)
        sec.rows.append(
            Row(
                "P1",
                f"ingest, {name} ({inputs[scale].rows:,} rows) vs pandas",
                ours.fmt(),
                pandas.fmt(),
                r.fmt(),
                f"≥{GOAL_PANDAS:g}x pandas",
                r.value >= GOAL_PANDAS,
            )
        )
        if scale == big:
            floor = stats["floor"]
            rf = Ratio.of(ours, floor)
            sec.rows.append(
                Row(
                    "P1",
                    f"ingest, {name} vs the floor (unzip + split)",
                    ours.fmt(),
                    floor.fmt(),
                    rf.fmt(),
                    f"≥{GOAL_FLOOR:.0%} of the floor",
                    rf.value >= GOAL_FLOOR,
                )
            )
    if not given and not real:
        sec.rows.insert(
            0,
            Row(
                "P1",
                "ingest, real slot",
                "skipped",
                "",
                "",
                f"≥{GOAL_PANDAS:g}x pandas",
                None,
                (
                    "../shared/fixtures/gdelt is absent: the 1x and 10x files are synthesized"
                    " from common/local/samples/gdelt"
                ),
            ),
        )

    sec.method = (
        "Each contender goes from the zipped export on disk to its result. **tributary** is production's code "
        "path for a GDELT events part: `common.sources.gdelt.parse_tsv` (Arrow streaming CSV) into "
        "`common.runtime.ingest.write_parquet` (snappy Parquet). **pandas** is gdeltPyR's normalization "
        "(`tests/bench/gdelt_peer.py` says exactly what is modelled): `read_csv(compression='zip', sep='\\t', "
        "header=None, names=<61 columns>, dtype=<CAMEO codes as str>)` then `to_parquet` (pyarrow, snappy). "
        "**floor** is `zipfile` plus `bytes.split(b'\\t')` on every line, counting rows. All contenders are "
        "checked to see the same number of rows, then run interleaved; rows/s per run.\n\n"
        + "\n".join(
            f"- {scale}x: {f.label}; {f.rows:,} rows, {f.csv_bytes / 1e6:.1f} MB unzipped, "
            f"{f.zip_path.stat().st_size / 1e6:.2f} MB zipped"
            for scale, f in inputs.items()
        )
    )
    lines = ["| contender | " + " | ".join(f"{s}x rows/s" for s in results) + " |", "|---|" + "---|" * len(results)]
    for name in results[big]:
        lines.append(
            f"| {name} | "
            + " | ".join(results[s][name].fmt() if name in results[s] else "failed" for s in results)
            + " |"
        )
    sec.details = "All contenders (median [min-max]):\n\n" + "\n".join(lines)

    missed = [row for row in sec.rows if row.met is False]
    if missed and ctx.do_profile:
        f = inputs[big]
        out = ctx.workdir / "p1-profile"
        out.mkdir(exist_ok=True)
        stats = results[big]
        ms = {name: f.rows / st.median * 1000 for name, st in stats.items()}
        ours, pandas, floor = ms["tributary"], ms["pandas"], ms["floor"]
        unzip, parse = ms["unzip only (info)"], ms["tributary parse only, no write (info)"]
        sec.analysis = (
            f"Profile of the tributary path on the {big}x file (5 runs):\n\n```\n"
            + profile(lambda: tributary_ingest(f.zip_path, out / "t.parquet"), repeats=5, top=12)
            + "\n```\n\n"
            + f"Where the time goes ({big}x file, medians of this run): tributary {ours:.0f} ms = inflating the zip "
            f"{unzip:.0f} ms + Arrow CSV parse and type conversion {parse - unzip:.0f} ms + Parquet write "
            f"{ours - parse:.0f} ms. pandas takes {pandas:.0f} ms; the floor {floor:.0f} ms (it converts nothing "
            f"and writes nothing).\n\n"
            f"- **≥{GOAL_PANDAS:g}x pandas** would need {pandas / GOAL_PANDAS:.0f} ms for the whole ingest, "
            f"{'less than' if pandas / GOAL_PANDAS < unzip else 'barely more than'} inflating the zip alone"
            f" ({unzip:.0f} ms, one core, Python's zlib), before any parsing. pandas 3 is not the slow peer "
            "gdeltPyR once had: its C parser feeds Arrow-backed string columns. The goal is not reachable on "
            f"this design; the realistic claim is the measured {pandas / ours:.1f}x pandas while streaming in "
            "bounded memory (P3), which pandas' `read_csv` does not do.\n"
            + floor_note(ours - parse, floor, met=stats["tributary"].median >= GOAL_FLOOR * stats["floor"].median)
        )
    return sec
