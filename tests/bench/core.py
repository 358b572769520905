"""What every benchmark shares: repeated measurement, medians with their spread, ratios, results, profiles.

A figure is always the median of several runs, shown with its spread (min-max). Comparisons are run
*interleaved* (ours, peer, ours, peer, ...) so that a noisy neighbour on a shared machine slows both
sides alike, and a ratio comes with the range of the per-round ratios.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Stat:
    """Several measurements of one quantity, in ``unit``."""

    values: list[float]
    unit: str

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)

    def map(self, fn: Callable[[float], float], unit: str) -> Stat:
        """The same runs in another unit (e.g. seconds → rows/s)."""
        return Stat([fn(v) for v in self.values], unit)

    def fmt(self) -> str:
        """``median unit [min-max]`` (n runs)."""
        return f"{num(self.median)} {self.unit} [{num(self.lo)}-{num(self.hi)}] (n={len(self.values)})"


def num(x: float) -> str:
    """A number with as many digits as are meaningful for a benchmark (3 significant, thousands separated)."""
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def timed(fn: Callable[[], Any]) -> Callable[[], float]:
    """``fn`` turned into a measurement: the wall-clock seconds one call takes."""

    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


def measure(fn: Callable[[], float], repeats: int, *, warmup: int = 0, unit: str = "s") -> Stat:
    """Call ``fn`` (which returns the measured number, see :func:`timed`) ``repeats`` times."""
    return measure_interleaved({"x": fn}, repeats, warmup=warmup, unit=unit)["x"]


def measure_interleaved(
    fns: dict[str, Callable[[], float]], repeats: int, *, warmup: int = 0, unit: str = "s"
) -> dict[str, Stat]:
    """Round-robin over ``fns`` ``repeats`` times (the order rotates each round); one Stat per name.

    ``warmup`` rounds are run first and discarded (imports, caches, .pyc files).
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            out[name].append(float(fns[name]()))
    return {name: Stat(values, unit) for name, values in out.items()}


@dataclass
class Ratio:
    """``ours / peer`` from the medians, with the range of the per-round (paired) ratios."""

    value: float
    lo: float
    hi: float

    @classmethod
    def of(cls, ours: Stat, peer: Stat) -> Ratio:
        paired = [a / b for a, b in zip(ours.values, peer.values, strict=False) if b]
        value = ours.median / peer.median if peer.median else float("nan")
        return cls(value, min(paired, default=value), max(paired, default=value))

    def fmt(self, suffix: str = "x") -> str:
        return f"{num(self.value)}{suffix} [{num(self.lo)}-{num(self.hi)}]"


@dataclass
class Row:
    """One line of the results table."""

    id: str
    measure: str
    ours: str
    peer: str
    ratio: str
    goal: str
    #: True / False against the goal; None for information only or skipped.
    met: bool | None
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "—"}[self.met]


@dataclass
class Section:
    """A measure's results: its rows, how it was measured, and (for a missed goal) the profile and fix."""

    id: str
    title: str
    rows: list[Row] = field(default_factory=list)
    #: Markdown: method, what was modelled, caveats.
    method: str = ""
    #: Markdown: details worth keeping (extra contenders, stage timings ...).
    details: str = ""
    #: Markdown: for a missed goal, the profile's top frames and what was changed or is proposed.
    analysis: str = ""
    seconds: float = 0.0


def profile(fn: Callable[[], Any], *, repeats: int = 1, top: int = 18, flat: bool = True) -> str:
    """pyinstrument over ``repeats`` calls of ``fn`` in this thread.

    ``flat``: the ``top`` frames with the most self time; otherwise the call tree (first ``top`` lines).
    """
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        for _ in range(repeats):
            fn()
    finally:
        profiler.stop()
    text = profiler.output_text(unicode=False, color=False, flat=flat, show_all=False)
    found = re.search(r"Duration:\s*([\d.]+)\s+CPU time:\s*([\d.]+)", text)
    head = f"pyinstrument: {repeats} call(s), wall {found.group(1)} s, CPU {found.group(2)} s" if found else ""
    frames = [line.rstrip() for line in text.splitlines() if re.match(r"^[\s|`-]*[\d.]+\s", line)]
    if flat:
        head += "; frames by self time (seconds):"
    return "\n".join([head, *frames[:top]])


@dataclass
class Context:
    """What a measure may use: a scratch folder, the repo root, and the run's size."""

    workdir: Path
    repo: Path
    quick: bool = False
    do_profile: bool = True

    def reps(self, full: int, quick: int) -> int:
        return quick if self.quick else full
