"""What handling one ingest task used, measured: CPU time, wall time and peak memory of the process.

A function instance handles one request at a time (the deployed functions' concurrency is 1), so the process's
CPU time over the request is the request's. The peak is the process's resident set high-water mark
(``ru_maxrss``) at the end of the request: what the instance needed so far, an upper bound for this request.
GiB-seconds are that peak times the wall time, the memory-time the request held.
"""

from __future__ import annotations

import resource
import time
from contextvars import ContextVar
from dataclasses import dataclass

from common.core.events import Event, EventType

#: Events that carry the usage: the outcomes and a part's result (a ``started`` has nothing to report yet).
CARRIED = frozenset({EventType.succeeded, EventType.failed, EventType.retrying, EventType.progress})


@dataclass(frozen=True)
class Meter:
    """CPU and wall clocks read when a task's handling began."""

    cpu: float
    wall: float

    @classmethod
    def start(cls) -> Meter:
        return cls(cpu=_cpu(), wall=time.monotonic())

    def read(self) -> dict[str, float]:
        """What was used since :meth:`start`."""
        wall = max(time.monotonic() - self.wall, 0.0)
        peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # KiB on Linux
        return {
            "cpu_seconds": round(max(_cpu() - self.cpu, 0.0), 6),
            "wall_seconds": round(wall, 6),
            "peak_rss_bytes": peak,
            "gib_seconds": round(peak / 1024**3 * wall, 9),
        }


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return float(r.ru_utime + r.ru_stime)


_current: ContextVar[Meter | None] = ContextVar("tributary_meter", default=None)


def start() -> None:
    """Begin measuring the task this context handles."""
    _current.set(Meter.start())


def stamp(event: Event) -> Event:
    """``event`` with what its task used so far, when it is an outcome or a part's result and a meter runs."""
    meter = _current.get()
    if meter is None or event.type not in CARRIED:
        return event
    return event.model_copy(update={"data": event.data.model_copy(update={"usage": meter.read()})})
