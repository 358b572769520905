"""Fixtures of the fault-injection suite, and the hook that writes its figures into RELIABILITY.md.

Every scenario is a test marked ``faults`` (``make test-faults`` = ``pytest -m faults`` runs them all). A
representative few also exist as ``smoke`` variants without the marker, so ``make test``
(``-m "not live and not faults"``) runs them too. A ``pytest -m faults`` run rewrites the generated part of
RELIABILITY.md with the figures of that run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.faults import harness

REPO = Path(__file__).resolve().parents[2]
RELIABILITY = REPO / "RELIABILITY.md"
BEGIN, END = "<!-- BEGIN GENERATED: tests/faults (make test-faults) -->", "<!-- END GENERATED -->"

_outcomes: dict[str, str] = {}
_started = time.monotonic()


@pytest.fixture(scope="package")
def fault_stack(request: pytest.FixtureRequest) -> Iterator[harness.FaultStack]:
    """One local stack for the suite (stopped when the package's tests are done): replay server with fault
    rules, fast queue retries, audit subscription."""
    with harness.fault_stack_dir(request.session) as root:
        fs = harness.start_fault_stack(root)
        yield fs
        harness.stop_fault_stack(fs)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "tests/faults/" not in report.nodeid.replace("\\", "/"):
        return
    if report.when == "call" or report.outcome != "passed":
        _outcomes[report.nodeid] = report.outcome if report.when == "call" else f"{report.outcome} ({report.when})"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("FAULTS_DEBUG"):
        for r in harness.RESULTS:
            print("\nROW", {k: v for k, v in r.items() if k not in ("job_id",)})
    markexpr = (session.config.getoption("markexpr", "") or "").strip()
    rows = [r for r in harness.RESULTS if not str(r["variant"]).startswith("smoke")]
    if markexpr != "faults" or not rows:
        return  # only a run of the whole matrix (pytest -m faults) rewrites the committed figures
    write_reliability(rows, time.monotonic() - _started)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_reliability(rows: list[dict[str, Any]], seconds: float) -> None:
    """Replace the generated block of RELIABILITY.md with the matrix of this run."""
    passed = sum(1 for o in _outcomes.values() if o == "passed")
    failed = [n for n, o in _outcomes.items() if o != "passed"]
    numeric = [r["injected"] for r in rows if isinstance(r["injected"], int)]
    jobs_ok = sum(1 for r in rows if r["ok"])
    once = sum(1 for r in rows if r["markers"] == r["distinct_events"])
    lines = [
        BEGIN,
        "",
        f"Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `pytest -m faults`, {seconds:.0f} s, "
        f"{passed} tests passed, {len(failed)} failed.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| faults injected | {sum(numeric)} |",
        f"| jobs ended correctly (state, error kind, message, attempts) | {jobs_ok} / {len(rows)} |",
        f"| duplicate records in the Parquet outputs | {sum(r['duplicates'] for r in rows)} |",
        f"| orphans (jobs not terminal, tasks left in a queue) | {sum(r['orphans'] for r in rows)} |",
        f"| jobs whose events were each applied once (markers = distinct event ids) | {once} / {len(rows)} |",
        f"| event markers / distinct events published | {sum(r['markers'] for r in rows)} / "
        f"{sum(r['distinct_events'] for r in rows)} |",
        f"| rejected requests (non-2xx answers that made Cloud Tasks or Pub/Sub deliver again) | "
        f"{sum(r['rejected'] for r in rows)} |",
        f"| extra deliveries sent by the Tasks emulator (`--duplicate-deliveries`) | "
        f"{sum(r['copies'] for r in rows)} |",
        "",
        "| fault | variant | source | injected | expected | ended | attempt | deliveries (rejected) "
        "| rows | duplicates | orphans | markers / events | s | message |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        message = r["message"] if len(r["message"]) <= 110 else r["message"][:107] + "..."
        lines.append(
            "| "
            + " | ".join(
                _cell(x)
                for x in (
                    r["fault"],
                    r["variant"],
                    r["source"],
                    r["injected"],
                    r["expected"],
                    ("✅ " if r["ok"] else "❌ ") + r["status"],
                    r["attempt"],
                    f"{r['deliveries']} ({r['rejected']})",
                    f"{r['rows']} / {r['expected_rows']}",
                    r["duplicates"],
                    r["orphans"],
                    f"{r['markers']} / {r['distinct_events']}",
                    r["seconds"],
                    f"`{message}`" if message else "",
                )
            )
            + " |"
        )
    if failed:
        lines += ["", "Failed in this run: " + ", ".join(f"`{n}`" for n in failed)]
    lines += ["", END]
    block = "\n".join(lines)
    text = RELIABILITY.read_text() if RELIABILITY.exists() else f"# Reliability\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    RELIABILITY.write_text(text)
