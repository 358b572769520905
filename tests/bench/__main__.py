"""``make bench``: run the benchmarks P1-P9, print the table, write BENCHMARKS.md.

    python -m tests.bench                      # everything, then BENCHMARKS.md (about 6-9 minutes on 2 cores)
    python -m tests.bench --only P1,P3 --quick # fast iteration: fewer runs, smaller sizes, nothing written
    python -m tests.bench --out /tmp/b.md      # also write a partial or quick run somewhere

Only a full run (no --only, no --quick) rewrites BENCHMARKS.md by default, so a quick look never replaces
the published figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MEASURES = ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9")


def registry() -> dict[str, Callable[..., object]]:
    """The measures, imported only once the environment is set (P4's no-op source must be registered first)."""
    from tests.bench.p1_ingest import p1_ingest
    from tests.bench.p2_coldstart import p2_coldstart
    from tests.bench.p3_memory import p3_memory
    from tests.bench.p4_stack import p4_stack
    from tests.bench.p5_enqueue import p5_enqueue
    from tests.bench.p6_embedded import p6_embedded
    from tests.bench.p6_p7_celery import p6_p7_celery
    from tests.bench.p8_backfill import p8_backfill
    from tests.bench.p9_cost import p9_cost

    return {
        "P1": p1_ingest,
        "P2": p2_coldstart,
        "P3": p3_memory,
        "P4": p4_stack,
        "P5": p5_enqueue,
        "P6": p6_embedded,
        "P7": p6_p7_celery,
        "P8": p8_backfill,
        "P9": p9_cost,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(MEASURES), help="comma-separated measures, e.g. P1,P3")
    parser.add_argument("--quick", action="store_true", help="fewer runs and smaller sizes (fast iteration)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (full run: BENCHMARKS.md)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiles of missed goals")
    args = parser.parse_args(argv)
    only = [m.strip().upper() for m in args.only.split(",") if m.strip()]
    unknown = sorted(set(only) - set(MEASURES))
    if unknown:
        parser.error(f"unknown measure(s) {', '.join(unknown)}; choose from {', '.join(MEASURES)}")
    full = set(only) == set(MEASURES) and not args.quick
    out = args.out or (REPO / "BENCHMARKS.md" if full else None)

    # P4 registers the no-op source in this process too (the stack provisions its queue from the registry).
    os.environ["TRIBUTARY_EXTRA_SOURCES"] = ",".join(
        filter(None, [os.environ.get("TRIBUTARY_EXTRA_SOURCES", ""), "tests.bench.noop:Noop"])
    )
    os.environ.setdefault("TRIBUTARY_NO_SECRET_MANAGER", "1")
    from tests.bench.core import Context, Row, Section
    from tests.bench.report import machine, markdown, table

    info = machine()
    print(f"Tributary benchmarks: {', '.join(only)}{' (quick)' if args.quick else ''}")
    print(f"{info['cpu']}; {info['python']}; {info['load']}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="tributary-bench-"))
    ctx = Context(workdir=workdir, repo=REPO, quick=args.quick, do_profile=not args.no_profile)
    measures = registry()
    sections: list[Section] = []
    started = time.monotonic()
    try:
        for name in only:
            t0 = time.monotonic()
            print(f"\n== {name} ...", flush=True)
            try:
                sec = measures[name](ctx)
            except Exception as exc:  # one broken measure must not hide the others
                traceback.print_exc()
                sec = Section(name, "failed to run")
                sec.rows.append(Row(name, "did not run", "", "", "", "", None, f"{type(exc).__name__}: {exc}"))
            assert isinstance(sec, Section)
            sec.seconds = time.monotonic() - t0
            sections.append(sec)
            print(table(sec.rows), flush=True)
            print(f"({sec.seconds:.0f} s)", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    total = time.monotonic() - started
    rows = [row for sec in sections for row in sec.rows]
    print("\n== Summary\n" + table(rows))
    print(f"\n{sum(r.met is True for r in rows)} of {sum(r.met is not None for r in rows)} goals met, {total:.0f} s.")
    if out is not None:
        command = "python -m tests.bench" + ("" if full else " " + " ".join(argv or sys.argv[1:]))
        out.write_text(markdown(sections, info, total, command))
        print(f"Wrote {out}")
    else:
        print("Not written (partial or quick run); pass --out FILE to keep it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
