"""The emulators' notion of now: real time with a forward offset, or a frozen clock that moves only when told."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """The emulator's notion of now. ``frozen`` clocks only move through :meth:`advance`."""

    frozen: bool

    def now(self) -> datetime: ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch, like :func:`time.time`."""
        ...

    def monotonic(self) -> float:
        """Seconds for measuring intervals, like :func:`time.monotonic`."""
        ...

    def advance(self, seconds: float) -> None: ...

    def move_to(self, instant: datetime) -> None: ...


class SystemClock:
    """Real time plus an offset that ``advance`` can push forward."""

    frozen = False

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def _shift(self) -> float:
        with self._lock:
            return self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def time(self) -> float:
        return time.time() + self._shift()

    def monotonic(self) -> float:
        return time.monotonic() + self._shift()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def move_to(self, instant: datetime) -> None:
        """Real time cannot be set; events are fired as soon as they are due."""


class FrozenClock:
    """A clock that stands still until it is advanced: deterministic tests (microsecond resolution)."""

    frozen = True

    def __init__(self, start: datetime | None = None) -> None:
        start = start if start is not None else datetime.now(UTC).replace(microsecond=0)
        if start.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime (for example datetime(..., tzinfo=UTC))")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def time(self) -> float:
        return self.now().timestamp()

    def monotonic(self) -> float:
        return self.time()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)

    def move_to(self, instant: datetime) -> None:
        with self._lock:
            if instant > self._now:
                self._now = instant


def make_clock(clock: Clock | datetime | None) -> Clock:
    """``None``: real time; an aware ``datetime``: a :class:`FrozenClock` there; a :class:`Clock`: itself."""
    if clock is None:
        return SystemClock()
    if isinstance(clock, datetime):
        return FrozenClock(clock)
    return clock
