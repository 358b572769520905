"""A local Cloud Scheduler emulator that speaks Google's real gRPC API.

There is no official Cloud Scheduler emulator. This one serves
``google.cloud.scheduler.v1.CloudScheduler`` with a generic gRPC handler and the proto-plus message
classes of ``google-cloud-scheduler``, so the stock ``scheduler_v1.CloudSchedulerClient`` works
against it unchanged (build it with :func:`common.gcp.clients.scheduler_client_for`).

What it does (details and differences from Cloud Scheduler: ``docs/scheduler-emulator.md``):

* CRUD, pause, resume and run of jobs, with Cloud Scheduler's gRPC status codes and its output
  fields (``state``, ``user_update_time``, ``schedule_time``, ``last_attempt_time``, ``status``);
* 5-field unix cron evaluated on wall-clock time in the job's IANA time zone;
* HTTP targets are fired with httpx, with the ``X-CloudScheduler-*`` headers, an OIDC token from
  :class:`common.local.emulators.oidc.LocalSigner`, the attempt deadline and the job's retry config;
  Pub/Sub and App Engine targets are stored but never fired;
* time control: :meth:`SchedulerEmulator.advance` moves the emulator's clock and fires every job due
  in the interval, synchronously and in order, and returns what it fired. With a real clock a
  background thread fires jobs when they are due. ``--admin-port`` serves ``POST /advance`` and
  ``GET /healthz`` for tests that run the emulator in another process.

Run it: ``python -m common.local.emulators.scheduler --host 127.0.0.1 --port 8085 [--admin-port 8086]``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
import httpx
from croniter import croniter
from google.cloud import scheduler_v1
from google.protobuf import duration_pb2, empty_pb2, field_mask_pb2, timestamp_pb2
from google.rpc import code_pb2, status_pb2

from common.local.emulators._grpc import RpcError, unary
from common.local.emulators._grpc import invalid as _invalid
from common.local.emulators.oidc import LocalSigner, default_signer
from common.local.serve import log_to_stderr, serve_until_signalled

log = logging.getLogger("tributary.emulators.scheduler")

SERVICE = "google.cloud.scheduler.v1.CloudScheduler"
USER_AGENT = "Google-Cloud-Scheduler"

# Defaults Cloud Scheduler applies (API reference of Job and RetryConfig).
DEFAULT_ATTEMPT_DEADLINE = timedelta(minutes=3)
MIN_ATTEMPT_DEADLINE = timedelta(seconds=15)
MAX_HTTP_ATTEMPT_DEADLINE = timedelta(minutes=30)
MAX_APPENGINE_ATTEMPT_DEADLINE = timedelta(hours=24, seconds=15)
DEFAULT_MIN_BACKOFF = timedelta(seconds=5)
DEFAULT_MAX_BACKOFF = timedelta(hours=1)
DEFAULT_MAX_DOUBLINGS = 5
MAX_RETRY_COUNT = 5
MAX_PAGE_SIZE = 500

#: Hard bounds, so that no loop in the emulator can run away.
MAX_ATTEMPTS_PER_EXECUTION = 100
MAX_EVENTS_PER_ADVANCE = 100_000
MAX_CRON_CANDIDATES = 10_000
HISTORY_SIZE = 10_000
STOP_BUDGET_SECONDS = 5.0

_PROJECT_RE = r"[A-Za-z0-9\-:.]+"
_LOCATION_RE = r"[A-Za-z0-9\-]+"
_JOB_ID_RE = r"[A-Za-z0-9_\-]{1,500}"
PARENT_RE = re.compile(rf"^projects/({_PROJECT_RE})/locations/({_LOCATION_RE})$")
JOB_NAME_RE = re.compile(rf"^projects/({_PROJECT_RE})/locations/({_LOCATION_RE})/jobs/({_JOB_ID_RE})$")
_TOPIC_RE = re.compile(r"^projects/[^/]+/topics/[^/]+$")

_MONTHS = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}
_DAYS = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}
_CRON_FIELD_RE = re.compile(r"^[0-9A-Za-z*/,\-]+$")

_OUTPUT_ONLY = ("user_update_time", "state", "status", "schedule_time", "last_attempt_time")
_UPDATABLE = (
    "description",
    "pubsub_target",
    "app_engine_http_target",
    "http_target",
    "schedule",
    "time_zone",
    "retry_config",
    "attempt_deadline",
)
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_STRIPPED_HEADER_PREFIXES = ("x-google-", "x-appengine-", "x-cloudscheduler")
_STRIPPED_HEADERS = {"host", "content-length", "user-agent", "authorization"}

Job = scheduler_v1.Job
JobPb = type(Job.pb(Job()))


# --------------------------------------------------------------------------------------------- clocks


class Clock(Protocol):
    """The emulator's notion of now. ``frozen`` clocks only move through :meth:`advance`."""

    frozen: bool

    def now(self) -> datetime: ...

    def advance(self, seconds: float) -> None: ...

    def move_to(self, instant: datetime) -> None: ...


class SystemClock:
    """Real time plus an offset that :meth:`SchedulerEmulator.advance` can push forward."""

    frozen = False

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            offset = self._offset
        return datetime.fromtimestamp(time.time() + offset, UTC)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def move_to(self, instant: datetime) -> None:
        """Real time cannot be set; events are fired as soon as they are due."""


class FrozenClock:
    """A clock that stands still until it is advanced: deterministic tests."""

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

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)

    def move_to(self, instant: datetime) -> None:
        with self._lock:
            if instant > self._now:
                self._now = instant


# ----------------------------------------------------------------------------------------- cron + tz


class ScheduleError(ValueError):
    """A schedule or time zone that Cloud Scheduler would refuse."""


@lru_cache(maxsize=256)
def zone(time_zone: str) -> ZoneInfo:
    """The IANA zone of a job; empty means UTC, and ``utc`` is accepted in any case (API reference)."""
    name = time_zone.strip()
    if not name or name.lower() == "utc":
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"time_zone {time_zone!r} is not a tz database name") from exc


@lru_cache(maxsize=1024)
def validate_schedule(schedule: str) -> str:
    """Check a 5-field unix-cron schedule; return it with single spaces. Raises :class:`ScheduleError`."""
    fields = schedule.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"schedule {schedule!r} must have 5 fields (minute hour day-of-month month day-of-week); "
            "the emulator does not support the legacy English-like syntax"
        )
    for index, part in enumerate(fields):
        if not _CRON_FIELD_RE.match(part):
            raise ScheduleError(f"schedule {schedule!r}: field {part!r} has unsupported characters")
        names = {word.upper() for word in re.findall(r"[A-Za-z]+", part)}
        allowed = _MONTHS if index == 3 else _DAYS if index == 4 else set()
        if names - allowed:
            raise ScheduleError(f"schedule {schedule!r}: {sorted(names - allowed)} not allowed in {part!r}")
    normalized = " ".join(fields)
    try:
        croniter(normalized, datetime(2000, 1, 1)).get_next(datetime)
    except Exception as exc:  # croniter raises several error types
        raise ScheduleError(f"schedule {schedule!r} is not valid unix-cron: {exc}") from exc
    return normalized


def _wall_to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant of a naive wall-clock time in ``tz``.

    A time that occurs twice (clocks go back) maps to its first occurrence. A time that does not
    exist (clocks go forward) maps to the end of the gap, that is the transition instant itself.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=0 reads the wall time with the offset before the transition (the later instant),
    # fold=1 with the offset after it (the earlier instant). The transition lies between them.
    lo = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    hi = first
    if lo > hi:
        lo, hi = hi, lo
    after = hi.astimezone(tz).utcoffset()
    for _ in range(64):  # bisection to the second; a gap is at most a few hours
        if hi - lo <= timedelta(seconds=1):
            break
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


def next_fire_time(schedule: str, time_zone: str, after: datetime) -> datetime:
    """The first scheduled instant strictly after ``after`` (UTC), on wall-clock time in ``time_zone``."""
    tz = zone(time_zone)
    normalized = validate_schedule(schedule)
    wall = after.astimezone(tz).replace(tzinfo=None, fold=0)
    iterator = croniter(normalized, wall)
    for _ in range(MAX_CRON_CANDIDATES):
        candidate = iterator.get_next(datetime)
        instant = _wall_to_utc(candidate, tz)
        if instant > after:
            return instant
    raise ScheduleError(f"schedule {schedule!r} has no fire time after {after.isoformat()}")


def rfc3339(instant: datetime, time_zone: str = "UTC") -> str:
    """``instant`` as RFC 3339 with the offset of ``time_zone`` (``Z`` when the offset is zero)."""
    local = instant.astimezone(zone(time_zone))
    spec = "seconds" if local.microsecond == 0 else "microseconds"
    if local.utcoffset() == timedelta(0):
        return instant.astimezone(UTC).replace(tzinfo=None).isoformat(timespec=spec) + "Z"
    return local.isoformat(timespec=spec)


def backoff(retry_number: int, min_backoff: float, max_backoff: float, max_doublings: int) -> float:
    """Seconds before retry ``retry_number`` (1-based), as ``RetryConfig.max_doublings`` describes.

    With min 10 s, max 300 s and 3 doublings: 10, 20, 40, 80, 160, 240, 300, 300, ...
    """
    exponent = retry_number - 1
    if exponent <= max_doublings:
        delay = min_backoff * (2**exponent)
    else:
        delay = min_backoff * (2**max_doublings) * (1 + exponent - max_doublings)
    return min(delay, max_backoff)


# ----------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class FireRecord:
    """One attempt (or one due time of a target the emulator does not dispatch)."""

    job: str
    schedule_time: datetime
    status: int | None
    attempt: int = 1
    kind: str = "schedule"  # "schedule", "retry" or "run"
    fired_at: datetime | None = None
    error: str | None = None
    dispatched: bool = True
    target: str = "http_target"

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "schedule_time": rfc3339(self.schedule_time),
            "status": self.status,
            "attempt": self.attempt,
            "kind": self.kind,
            "fired_at": rfc3339(self.fired_at) if self.fired_at else None,
            "error": self.error,
            "dispatched": self.dispatched,
            "target": self.target,
        }


@dataclass
class _Retry:
    at: datetime
    attempt: int
    first_attempt: datetime
    schedule_time: datetime


@dataclass
class _JobState:
    job: Any  # the raw protobuf Job
    uid: int
    next_time: datetime | None = None
    retry: _Retry | None = None
    in_flight: bool = False

    @property
    def enabled(self) -> bool:
        return self.job.state == Job.State.ENABLED

    def due(self) -> tuple[datetime, str] | None:
        if not self.enabled or self.in_flight:
            return None
        if self.retry is not None and (self.next_time is None or self.retry.at < self.next_time):
            return self.retry.at, "retry"
        if self.next_time is None:
            return None
        return self.next_time, "schedule"


@dataclass
class _Event:
    name: str
    uid: int
    job: Any  # snapshot of the raw protobuf Job
    kind: str
    schedule_time: datetime
    attempt: int = 1
    first_attempt: datetime | None = None


# ------------------------------------------------------------------------------------------ helpers


def _ts(instant: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(instant)
    return stamp


def _dur(delta: timedelta) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(delta)
    return out


def _seconds(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def _copy(job: Any) -> Any:
    out = JobPb()
    out.CopyFrom(job)
    return out


def _job_id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _http_code_to_rpc(status: int) -> int:
    """google.rpc.Code for an HTTP answer (the mapping of google/rpc/code.proto)."""
    if 200 <= status < 300:
        return code_pb2.OK
    return {
        400: code_pb2.INVALID_ARGUMENT,
        401: code_pb2.UNAUTHENTICATED,
        403: code_pb2.PERMISSION_DENIED,
        404: code_pb2.NOT_FOUND,
        409: code_pb2.ABORTED,
        429: code_pb2.RESOURCE_EXHAUSTED,
        499: code_pb2.CANCELLED,
        501: code_pb2.UNIMPLEMENTED,
        503: code_pb2.UNAVAILABLE,
        504: code_pb2.DEADLINE_EXCEEDED,
    }.get(status, code_pb2.FAILED_PRECONDITION if 400 <= status < 500 else code_pb2.INTERNAL)


# -------------------------------------------------------------------------------------------- emulator


class SchedulerEmulator:
    """An in-process Cloud Scheduler: gRPC server, job store, cron firing and time control.

    ``clock``: ``None`` for real time (a background thread fires jobs when due), a
    :class:`FrozenClock` or an aware ``datetime`` (frozen there) for tests, or any :class:`Clock`.
    ``fire=False`` stores and schedules jobs but never sends a request.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        signer: LocalSigner | None = None,
        clock: Clock | datetime | None = None,
        fire: bool = True,
        admin_port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.admin_port = admin_port
        self._signer = signer
        if clock is None:
            self._clock: Clock = SystemClock()
        elif isinstance(clock, datetime):
            self._clock = FrozenClock(clock)
        else:
            self._clock = clock
        self._fire = fire
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._jobs: dict[str, _JobState] = {}
        self._uid = 0
        self._history: deque[FireRecord] = deque(maxlen=HISTORY_SIZE)
        self._advancing = 0
        self._advance_lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: grpc.Server | None = None
        self._ticker: threading.Thread | None = None
        self._dispatchers: set[threading.Thread] = set()
        self._admin: ThreadingHTTPServer | None = None
        self._admin_thread: threading.Thread | None = None
        self._http: httpx.Client | None = None
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> int:
        """Start serving; returns the gRPC port (useful with ``port=0``)."""
        if self._server is not None:
            return self.port
        self._stopping.clear()
        self._http = httpx.Client(trust_env=False, follow_redirects=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="scheduler-grpc"))
        server.add_generic_rpc_handlers((self._handlers(),))
        bound = server.add_insecure_port(f"{self.host}:{self.port}")
        if bound == 0:
            raise RuntimeError(f"cannot bind the scheduler emulator to {self.host}:{self.port}")
        server.start()
        self._server = server
        self.port = bound
        if not self._clock.frozen:
            self._ticker = threading.Thread(target=self._tick_loop, name="scheduler-ticker", daemon=True)
            self._ticker.start()
        if self.admin_port is not None:
            self.start_admin(self.admin_port)
        log.info("scheduler emulator listening on %s", self.address)
        return bound

    def stop(self) -> None:
        """Stop serving and firing; joins every thread within a few seconds."""
        deadline = time.monotonic() + STOP_BUDGET_SECONDS
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._admin is not None:
            self._admin.shutdown()
            self._admin.server_close()
            self._admin = None
        if self._admin_thread is not None:
            self._admin_thread.join(timeout=max(0.1, deadline - time.monotonic()))
            self._admin_thread = None
        if self._server is not None:
            self._server.stop(grace=0.5).wait(timeout=max(0.1, deadline - time.monotonic()))
            self._server = None
        if self._ticker is not None:
            self._ticker.join(timeout=max(0.1, deadline - time.monotonic()))
            self._ticker = None
        # Closing the HTTP client aborts the requests still in flight, so their threads end quickly.
        client, self._http = self._http, None
        if client is not None:
            client.close()
        with self._lock:
            dispatchers = list(self._dispatchers)
        for thread in dispatchers:
            thread.join(timeout=max(0.05, deadline - time.monotonic()))

    def __enter__(self) -> SchedulerEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        """``host:port`` for :func:`common.gcp.clients.scheduler_client_for`."""
        return f"{self.host}:{self.port}"

    @property
    def admin_address(self) -> str | None:
        return f"{self.host}:{self.admin_port}" if self._admin is not None else None

    @property
    def signer(self) -> LocalSigner:
        """The OIDC signer (``default_signer()`` on first use when none was given)."""
        with self._lock:
            if self._signer is None:
                self._signer = default_signer()
            return self._signer

    @property
    def clock(self) -> Clock:
        return self._clock

    def now(self) -> datetime:
        return self._clock.now()

    @property
    def history(self) -> list[FireRecord]:
        """Every fire record so far (the last 10,000), oldest first."""
        with self._lock:
            return list(self._history)

    # ------------------------------------------------------------------ time control

    def advance(self, seconds: float) -> list[FireRecord]:
        """Move the clock forward by ``seconds`` and fire, in order, every job due in that interval.

        Each due time fires once (an every-minute job fires 60 times in ``advance(3600)``), and
        retries that fall inside the interval are attempted too. Requests are sent synchronously.
        """
        if seconds < 0:
            raise ValueError("the emulator's clock only moves forward")
        records: list[FireRecord] = []
        with self._advance_lock:
            with self._cond:
                self._advancing += 1
            try:
                target = self._clock.now() + timedelta(seconds=seconds)
                if not self._clock.frozen:
                    self._clock.advance(seconds)
                for _ in range(MAX_EVENTS_PER_ADVANCE):
                    if self._stopping.is_set():
                        break
                    event = self._claim_next(until=target)
                    if event is None:
                        break
                    records.append(self._execute(event))
                else:
                    raise RuntimeError(f"more than {MAX_EVENTS_PER_ADVANCE} fires in one advance()")
                self._clock.move_to(target)
                with self._cond:
                    for state in self._jobs.values():
                        self._refresh_output(state)
            finally:
                with self._cond:
                    self._advancing -= 1
                    self._cond.notify_all()
        return records

    def _claim_next(self, until: datetime) -> _Event | None:
        with self._cond:
            best: tuple[datetime, str, str] | None = None
            for name, state in self._jobs.items():
                due = state.due()
                if due is None or due[0] > until:
                    continue
                if best is None or (due[0], name) < (best[0], best[2]):
                    best = (due[0], due[1], name)
            if best is None:
                return None
            self._clock.move_to(best[0])
            return self._claim(self._jobs[best[2]], best[1], coalesce=False)

    def _claim(self, state: _JobState, kind: str, *, coalesce: bool) -> _Event:
        """Take the due execution of ``state`` (lock held) and move its schedule on."""
        state.in_flight = True
        name = state.job.name
        if kind == "retry" and state.retry is not None:
            retry = state.retry
            state.retry = None
            return _Event(
                name, state.uid, _copy(state.job), "retry", retry.schedule_time, retry.attempt, retry.first_attempt
            )
        assert state.next_time is not None
        scheduled = state.next_time
        state.retry = None
        state.next_time = next_fire_time(state.job.schedule, state.job.time_zone, scheduled)
        if coalesce:
            # A real clock that fell behind (a suspended machine) fires once, not once per missed time.
            now = self._clock.now()
            if state.next_time <= now:
                state.next_time = next_fire_time(state.job.schedule, state.job.time_zone, now)
        return _Event(name, state.uid, _copy(state.job), "schedule", scheduled)

    def _tick_loop(self) -> None:
        while not self._stopping.is_set():
            events: list[_Event] = []
            with self._cond:
                if self._advancing:
                    self._cond.wait(timeout=0.5)
                    continue
                now = self._clock.now()
                wait = 30.0
                for state in self._jobs.values():
                    due = state.due()
                    if due is None:
                        continue
                    if due[0] <= now:
                        events.append(self._claim(state, due[1], coalesce=True))
                    else:
                        wait = min(wait, (due[0] - now).total_seconds())
                if not events:
                    self._cond.wait(timeout=max(0.01, wait))
                    continue
            for event in events:
                self._spawn(event)

    def _spawn(self, event: _Event) -> None:
        def run() -> None:
            try:
                self._execute(event)
            finally:
                with self._lock:
                    self._dispatchers.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"scheduler-fire-{_job_id(event.name)}", daemon=True)
        with self._lock:
            self._dispatchers.add(thread)
        thread.start()

    # ------------------------------------------------------------------ firing

    def _execute(self, event: _Event) -> FireRecord:
        """Send one attempt, record it and schedule the retry; never raises."""
        started = self._clock.now()
        first = event.first_attempt or started
        target = event.job.WhichOneof("target") or "none"
        if not self._fire:
            record = FireRecord(
                event.name,
                event.schedule_time,
                None,
                event.attempt,
                event.kind,
                started,
                "not dispatched: the emulator runs with fire=False",
                False,
                target,
            )
        elif target != "http_target":
            self._warn_once(
                f"{event.name}:{target}",
                "%s: %s targets are stored but not dispatched by the emulator",
                event.name,
                target,
            )
            record = FireRecord(
                event.name,
                event.schedule_time,
                None,
                event.attempt,
                event.kind,
                started,
                f"not dispatched: the emulator does not fire {target}",
                False,
                target,
            )
        else:
            status, error = self._send_abortable(event)
            record = FireRecord(
                event.name, event.schedule_time, status, event.attempt, event.kind, started, error, True, target
            )
        log.info(
            "fired %s kind=%s attempt=%d schedule_time=%s status=%s%s",
            event.name,
            record.kind,
            record.attempt,
            rfc3339(record.schedule_time),
            record.status if record.status is not None else "-",
            f" error={record.error}" if record.error else "",
        )
        self._complete(event, record, first)
        return record

    def _send_abortable(self, event: _Event) -> tuple[int | None, str | None]:
        """:meth:`_send` on a daemon thread, abandoned when the emulator stops.

        A target that hangs would otherwise hold ``stop()`` (and the interpreter's exit, for gRPC worker
        threads) for up to the attempt deadline: the waiting caller checks ``_stopping`` four times a second.
        """
        done = threading.Event()
        result: list[tuple[int | None, str | None]] = []

        def work() -> None:
            try:
                result.append(self._send(event))
            except Exception as exc:  # never let a dispatch thread die silently
                result.append((None, f"UNAVAILABLE: {type(exc).__name__}: {exc}"))
            finally:
                done.set()

        if self._stopping.is_set():
            return None, "CANCELLED: the emulator is stopping"
        threading.Thread(target=work, name=f"scheduler-http-{_job_id(event.name)}", daemon=True).start()
        while not done.wait(timeout=0.25):
            if self._stopping.is_set():
                return None, "CANCELLED: the emulator stopped during the attempt"
        return result[0]

    def _send(self, event: _Event) -> tuple[int | None, str | None]:
        job = event.job
        target = job.http_target
        method = scheduler_v1.HttpMethod(target.http_method).name
        if method == "HTTP_METHOD_UNSPECIFIED":
            method = "POST"
        headers = {
            key: value
            for key, value in target.headers.items()
            if key.lower() not in _STRIPPED_HEADERS and not key.lower().startswith(_STRIPPED_HEADER_PREFIXES)
        }
        if target.body and not any(key.lower() == "content-type" for key in headers):
            headers["Content-Type"] = "application/octet-stream"
        headers["User-Agent"] = USER_AGENT
        headers["X-CloudScheduler"] = "true"
        headers["X-CloudScheduler-JobName"] = _job_id(job.name)
        headers["X-CloudScheduler-ScheduleTime"] = rfc3339(event.schedule_time, job.time_zone)
        auth = target.WhichOneof("authorization_header")
        if auth == "oidc_token":
            audience = target.oidc_token.audience or target.uri
            token = self.signer.sign_id_token(audience, target.oidc_token.service_account_email)
            headers["Authorization"] = f"Bearer {token}"
        elif auth == "oauth_token":
            self._warn_once(f"{job.name}:oauth", "%s: oauth_token is not emulated; no Authorization sent", job.name)
        deadline = (
            _seconds(job.attempt_deadline)
            if job.HasField("attempt_deadline")
            else DEFAULT_ATTEMPT_DEADLINE.total_seconds()
        )
        client = self._http
        if client is None:
            return None, "UNAVAILABLE: the emulator is stopped"
        try:
            response = client.request(
                method, target.uri, headers=headers, content=target.body or None, timeout=deadline
            )
        except httpx.TimeoutException as exc:
            return None, f"DEADLINE_EXCEEDED: no answer within {deadline:g} s ({type(exc).__name__})"
        except httpx.HTTPError as exc:
            return None, f"UNAVAILABLE: {type(exc).__name__}: {exc}"
        return response.status_code, None

    def _complete(self, event: _Event, record: FireRecord, first_attempt: datetime) -> None:
        with self._cond:
            self._history.append(record)
            state = self._jobs.get(event.name)
            if state is None or state.uid != event.uid:
                self._cond.notify_all()
                return  # deleted (or deleted and re-created) while the request was in flight
            if event.kind != "run":
                state.in_flight = False
            if record.dispatched:
                assert record.fired_at is not None
                state.job.last_attempt_time.CopyFrom(_ts(record.fired_at))
                if record.status is not None:
                    code = _http_code_to_rpc(record.status)
                    message = "" if record.ok else f"Original HTTP response code number = {record.status}"
                else:
                    error = record.error or "UNAVAILABLE"
                    code = (
                        code_pb2.DEADLINE_EXCEEDED
                        if error.startswith("DEADLINE")
                        else code_pb2.CANCELLED
                        if error.startswith("CANCELLED")
                        else code_pb2.UNAVAILABLE
                    )
                    message = error
                state.job.status.CopyFrom(status_pb2.Status(code=code, message=message))
                if not record.ok:
                    self._schedule_retry(state, event, first_attempt)
            self._refresh_output(state)
            self._cond.notify_all()

    def _schedule_retry(self, state: _JobState, event: _Event, first_attempt: datetime) -> None:
        if not state.enabled or state.retry is not None or (event.kind == "run" and state.in_flight):
            return
        config = event.job.retry_config
        retries_done = event.attempt - 1
        count_left = retries_done < config.retry_count
        window = _seconds(config.max_retry_duration)
        now = self._clock.now()
        if window > 0:
            time_left = (now - first_attempt).total_seconds() < window
            allowed = (count_left or time_left) if config.retry_count > 0 else time_left
        else:
            allowed = count_left
        if not allowed or event.attempt >= MAX_ATTEMPTS_PER_EXECUTION:
            return
        delay = backoff(
            retries_done + 1,
            _seconds(config.min_backoff_duration),
            _seconds(config.max_backoff_duration),
            config.max_doublings,
        )
        at = now + timedelta(seconds=delay)
        if state.next_time is not None and at >= state.next_time:
            return  # retries stop at the next scheduled execution
        state.retry = _Retry(at, event.attempt + 1, first_attempt, event.schedule_time)

    def _refresh_output(self, state: _JobState) -> None:
        """Keep ``schedule_time`` on the next execution (lock held)."""
        if state.enabled and state.next_time is not None and not self._clock.frozen and self._ticker is None:
            now = self._clock.now()
            if state.next_time <= now:  # no ticker thread: keep the next time in the future
                state.next_time = next_fire_time(state.job.schedule, state.job.time_zone, now)
        due = None
        if state.enabled:
            if state.retry is not None and (state.next_time is None or state.retry.at < state.next_time):
                due = state.retry.at
            else:
                due = state.next_time
        if due is None:
            state.job.ClearField("schedule_time")
        else:
            state.job.schedule_time.CopyFrom(_ts(due))

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning(message, *args)

    # ------------------------------------------------------------------ validation

    def _normalize(self, job: Any) -> None:
        """Validate a job and fill the defaults Cloud Scheduler fills; raises :class:`RpcError`."""
        if len(job.description) > 500:
            raise _invalid("description must not be longer than 500 characters")
        if not job.schedule.strip():
            raise _invalid("Schedule or time zone is invalid. (schedule is required)")
        try:
            job.schedule = validate_schedule(job.schedule)
            zone(job.time_zone)
        except ScheduleError as exc:
            raise _invalid(f"Schedule or time zone is invalid. ({exc})") from exc
        try:
            next_fire_time(job.schedule, job.time_zone, self._clock.now())
        except ScheduleError as exc:
            raise _invalid(f"Schedule or time zone is invalid. ({exc})") from exc
        kind = job.WhichOneof("target")
        if kind is None:
            raise _invalid("Job must have a target: http_target, pubsub_target or app_engine_http_target")
        if kind == "http_target":
            self._normalize_http(job.http_target)
            if not job.HasField("attempt_deadline"):
                job.attempt_deadline.CopyFrom(_dur(DEFAULT_ATTEMPT_DEADLINE))
            deadline = job.attempt_deadline.ToTimedelta()
            if not MIN_ATTEMPT_DEADLINE <= deadline <= MAX_HTTP_ATTEMPT_DEADLINE:
                raise _invalid("attempt_deadline must be between 15 seconds and 30 minutes for HTTP targets")
        elif kind == "pubsub_target":
            if not _TOPIC_RE.match(job.pubsub_target.topic_name):
                raise _invalid("pubsub_target.topic_name must look like projects/PROJECT_ID/topics/TOPIC_ID")
        elif kind == "app_engine_http_target" and job.HasField("attempt_deadline"):
            deadline = job.attempt_deadline.ToTimedelta()
            if deadline and not MIN_ATTEMPT_DEADLINE <= deadline <= MAX_APPENGINE_ATTEMPT_DEADLINE:
                raise _invalid("attempt_deadline must be between 15 seconds and 24 h 15 s for App Engine targets")
        self._normalize_retry(job)

    @staticmethod
    def _normalize_http(target: Any) -> None:
        if not target.uri.startswith(("http://", "https://")):
            raise _invalid(f"http_target.uri must begin with http:// or https://, got {target.uri!r}")
        if len(target.uri) > 2083:
            raise _invalid("http_target.uri is longer than 2083 characters")
        if target.http_method == scheduler_v1.HttpMethod.HTTP_METHOD_UNSPECIFIED:
            target.http_method = scheduler_v1.HttpMethod.POST
        method = scheduler_v1.HttpMethod(target.http_method).name
        if target.body and method not in _BODY_METHODS:
            raise _invalid(f"http_target.body is allowed only with POST, PUT or PATCH, not {method}")
        auth = target.WhichOneof("authorization_header")
        if auth == "oidc_token" and not target.oidc_token.service_account_email:
            raise _invalid("http_target.oidc_token.service_account_email is required")
        if auth == "oauth_token" and not target.oauth_token.service_account_email:
            raise _invalid("http_target.oauth_token.service_account_email is required")
        # Cloud Scheduler stores the headers it sets: User-Agent always, Content-Type with a body.
        for key in [k for k in target.headers if k.lower() == "user-agent" and k != "User-Agent"]:
            del target.headers[key]
        target.headers["User-Agent"] = USER_AGENT
        if target.body and not any(k.lower() == "content-type" for k in target.headers):
            target.headers["Content-Type"] = "application/octet-stream"
        size = sum(len(k) + len(v) for k, v in target.headers.items())
        if size >= 80 * 1024:
            raise _invalid("http_target.headers must total less than 80KB")

    @staticmethod
    def _normalize_retry(job: Any) -> None:
        config = job.retry_config
        if not job.HasField("retry_config"):
            config.max_doublings = DEFAULT_MAX_DOUBLINGS
        if not config.HasField("min_backoff_duration"):
            config.min_backoff_duration.CopyFrom(_dur(DEFAULT_MIN_BACKOFF))
        if not config.HasField("max_backoff_duration"):
            config.max_backoff_duration.CopyFrom(_dur(DEFAULT_MAX_BACKOFF))
        if not config.HasField("max_retry_duration"):
            config.max_retry_duration.CopyFrom(_dur(timedelta(0)))
        if not 0 <= config.retry_count <= MAX_RETRY_COUNT:
            raise _invalid("retry_config.retry_count must be between 0 and 5")
        if config.max_doublings < 0:
            raise _invalid("retry_config.max_doublings must not be negative")
        for field_name in ("min_backoff_duration", "max_backoff_duration", "max_retry_duration"):
            if _seconds(getattr(config, field_name)) < 0:
                raise _invalid(f"retry_config.{field_name} must not be negative")
        if _seconds(config.min_backoff_duration) > _seconds(config.max_backoff_duration):
            raise _invalid("retry_config.min_backoff_duration must not exceed max_backoff_duration")

    @staticmethod
    def _check_name(name: str) -> None:
        if not JOB_NAME_RE.match(name):
            raise _invalid(
                f"Invalid job name {name!r}: expected projects/PROJECT_ID/locations/LOCATION_ID/jobs/JOB_ID "
                "(JOB_ID: letters, digits, hyphens or underscores, at most 500)"
            )

    @staticmethod
    def _check_parent(parent: str) -> None:
        if not PARENT_RE.match(parent):
            raise _invalid(f"Invalid parent {parent!r}: expected projects/PROJECT_ID/locations/LOCATION_ID")

    def _get(self, name: str) -> _JobState:
        self._check_name(name)
        state = self._jobs.get(name)
        if state is None:
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"Job not found: {name}")
        return state

    @staticmethod
    def _out(state: _JobState) -> Any:
        return Job.wrap(_copy(state.job))

    # ------------------------------------------------------------------ RPCs

    def list_jobs(self, request: scheduler_v1.ListJobsRequest) -> scheduler_v1.ListJobsResponse:
        self._check_parent(request.parent)
        if request.page_size < 0:
            raise _invalid("page_size must not be negative")
        size = min(request.page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        after = ""
        if request.page_token:
            try:
                token = json.loads(base64.urlsafe_b64decode(request.page_token.encode()))
                after, parent = token["after"], token["parent"]
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise _invalid(f"Invalid page_token {request.page_token!r}") from exc
            if parent != request.parent:
                raise _invalid("page_token belongs to another parent")
        prefix = request.parent + "/jobs/"
        with self._lock:
            names = sorted(name for name in self._jobs if name.startswith(prefix) and name > after)
            page = names[:size]
            jobs = [self._out(self._jobs[name]) for name in page]
        token = ""
        if len(names) > size:
            raw = json.dumps({"after": page[-1], "parent": request.parent}).encode()
            token = base64.urlsafe_b64encode(raw).decode()
        return scheduler_v1.ListJobsResponse(jobs=jobs, next_page_token=token)

    def get_job(self, request: scheduler_v1.GetJobRequest) -> Any:
        with self._lock:
            state = self._get(request.name)
            self._refresh_output(state)
            return self._out(state)

    def create_job(self, request: scheduler_v1.CreateJobRequest) -> Any:
        self._check_parent(request.parent)
        job = _copy(scheduler_v1.Job.pb(request.job))
        if not job.name:
            job.name = f"{request.parent}/jobs/{secrets.token_hex(10)}"
        self._check_name(job.name)
        if job.name.rsplit("/jobs/", 1)[0] != request.parent:
            raise _invalid(f"Job name {job.name!r} is not under parent {request.parent!r}")
        for output_only in _OUTPUT_ONLY:
            job.ClearField(output_only)
        self._normalize(job)
        with self._cond:
            if job.name in self._jobs:
                raise RpcError(grpc.StatusCode.ALREADY_EXISTS, f"Job {job.name} already exists")
            now = self._clock.now()
            job.state = Job.State.ENABLED
            job.user_update_time.CopyFrom(_ts(now))
            self._uid += 1
            state = _JobState(job, self._uid, next_fire_time(job.schedule, job.time_zone, now))
            self._jobs[job.name] = state
            self._refresh_output(state)
            self._cond.notify_all()
            return self._out(state)

    def update_job(self, request: scheduler_v1.UpdateJobRequest) -> Any:
        incoming = scheduler_v1.Job.pb(request.job)
        if not incoming.name:
            raise _invalid("job.name is required")
        self._check_name(incoming.name)
        mask_pb = scheduler_v1.UpdateJobRequest.pb(request).update_mask
        paths = list(mask_pb.paths)
        if paths:
            for path in paths:
                top = path.split(".", 1)[0]
                valid = field_mask_pb2.FieldMask(paths=[path]).IsValidForDescriptor(JobPb.DESCRIPTOR)
                if not valid or top == "name":
                    raise _invalid(f"Invalid mask for Job: {path}")
            paths = [p for p in paths if p.split(".", 1)[0] not in _OUTPUT_ONLY]
        else:  # AIP-134: no mask means every populated field
            paths = [fd.name for fd, _ in incoming.ListFields() if fd.name in _UPDATABLE]
        with self._cond:
            state = self._get(incoming.name)
            job = _copy(state.job)
            if paths:
                field_mask_pb2.FieldMask(paths=paths).MergeMessage(
                    incoming, job, replace_message_field=True, replace_repeated_field=True
                )
            self._normalize(job)
            now = self._clock.now()
            job.user_update_time.CopyFrom(_ts(now))
            rescheduled = (job.schedule, job.time_zone) != (state.job.schedule, state.job.time_zone)
            state.job = job
            if rescheduled or state.next_time is None:
                state.next_time = next_fire_time(job.schedule, job.time_zone, now)
                state.retry = None
            self._refresh_output(state)
            self._cond.notify_all()
            return self._out(state)

    def delete_job(self, request: scheduler_v1.DeleteJobRequest) -> empty_pb2.Empty:
        with self._cond:
            self._get(request.name)
            del self._jobs[request.name]
            self._cond.notify_all()
        return empty_pb2.Empty()

    def _get_in(self, name: str, required: Any, rule: str) -> _JobState:
        """The job ``name``, which must be in state ``required`` (FAILED_PRECONDITION otherwise, as Google)."""
        state = self._get(name)
        if state.job.state != required:
            raise RpcError(
                grpc.StatusCode.FAILED_PRECONDITION, f"Job {name} is {Job.State(state.job.state).name}; {rule}"
            )
        return state

    def pause_job(self, request: scheduler_v1.PauseJobRequest) -> Any:
        with self._cond:
            state = self._get_in(request.name, Job.State.ENABLED, "only an ENABLED job can be paused")
            state.job.state = Job.State.PAUSED
            state.retry = None
            self._refresh_output(state)
            self._cond.notify_all()
            return self._out(state)

    def resume_job(self, request: scheduler_v1.ResumeJobRequest) -> Any:
        with self._cond:
            state = self._get_in(request.name, Job.State.PAUSED, "only a PAUSED job can be resumed")
            state.job.state = Job.State.ENABLED
            state.next_time = next_fire_time(state.job.schedule, state.job.time_zone, self._clock.now())
            state.retry = None
            self._refresh_output(state)
            self._cond.notify_all()
            return self._out(state)

    def run_job(self, request: scheduler_v1.RunJobRequest) -> Any:
        """Fire now. The first attempt completes before the RPC answers (retries follow the clock)."""
        with self._cond:
            state = self._get(request.name)
            now = self._clock.now()
            event = _Event(request.name, state.uid, _copy(state.job), "run", now, 1, now)
        self._execute(event)
        with self._cond:
            after = self._jobs.get(request.name)
            if after is None:
                raise RpcError(grpc.StatusCode.NOT_FOUND, f"Job not found: {request.name}")
            return self._out(after)

    # ------------------------------------------------------------------ gRPC wiring

    def _handlers(self) -> grpc.GenericRpcHandler:
        def rpc(fn: Callable[[Any], Any], request_cls: Any, serialize: Callable[[Any], bytes]) -> Any:
            return unary(f"scheduler.{fn.__name__}", fn, request_cls, serialize, log=log)

        job_out = scheduler_v1.Job.serialize
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ListJobs": rpc(self.list_jobs, scheduler_v1.ListJobsRequest, scheduler_v1.ListJobsResponse.serialize),
                "GetJob": rpc(self.get_job, scheduler_v1.GetJobRequest, job_out),
                "CreateJob": rpc(self.create_job, scheduler_v1.CreateJobRequest, job_out),
                "UpdateJob": rpc(self.update_job, scheduler_v1.UpdateJobRequest, job_out),
                "DeleteJob": rpc(self.delete_job, scheduler_v1.DeleteJobRequest, empty_pb2.Empty.SerializeToString),
                "PauseJob": rpc(self.pause_job, scheduler_v1.PauseJobRequest, job_out),
                "ResumeJob": rpc(self.resume_job, scheduler_v1.ResumeJobRequest, job_out),
                "RunJob": rpc(self.run_job, scheduler_v1.RunJobRequest, job_out),
            },
        )

    # ------------------------------------------------------------------ admin HTTP

    def start_admin(self, port: int = 0) -> int:
        """Serve ``POST /advance {"seconds": N}`` and ``GET /healthz`` on ``host:port``; returns the port."""
        if self._admin is not None:
            return self._admin.server_address[1]
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "tributary-scheduler-emulator"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("admin: " + format, *args)

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, message: str) -> None:
                self._reply(status, {"error": {"code": status, "message": message}})

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] == "/healthz":
                    with emulator._lock:
                        count = len(emulator._jobs)
                    self._reply(200, {"status": "ok", "now": rfc3339(emulator.now()), "jobs": count})
                else:
                    self._error(404, f"no such path: {self.path}")

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != "/advance":
                    self._error(404, f"no such path: {self.path}")
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    if length > 65536:
                        raise ValueError("body too large")
                    payload = json.loads(self.rfile.read(length) or b"{}")
                    seconds = payload["seconds"]
                    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                        raise ValueError("seconds must be a non-negative number")
                except (ValueError, KeyError, TypeError) as exc:
                    self._error(400, f'expected {{"seconds": N}} with N >= 0: {exc}')
                    return
                try:
                    records = emulator.advance(float(seconds))
                except RuntimeError as exc:
                    self._error(400, str(exc))
                    return
                self._reply(200, {"fired": [r.to_dict() for r in records], "now": rfc3339(emulator.now())})

        server = ThreadingHTTPServer((self.host, port), Handler)
        server.daemon_threads = True
        self._admin = server
        self.admin_port = server.server_address[1]
        self._admin_thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="scheduler-admin", daemon=True
        )
        self._admin_thread.start()
        return self.admin_port


# ------------------------------------------------------------------------------------------------- CLI


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.local.emulators.scheduler",
        description="Local Cloud Scheduler emulator (google.cloud.scheduler.v1 over plaintext gRPC).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="gRPC port (default: any free port)")
    parser.add_argument("--admin-port", type=int, default=None, help="serve POST /advance and GET /healthz")
    parser.add_argument("--oidc-key-file", default=None, help="RSA key shared with the other emulators")
    parser.add_argument("--frozen-clock", action="store_true", help="time moves only with POST /advance")
    parser.add_argument("--no-fire", action="store_true", help="store and schedule jobs, send no request")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(list(argv) if argv is not None else None)
    log_to_stderr(args.log_level)
    signer = LocalSigner(args.oidc_key_file) if args.oidc_key_file else None
    emulator = SchedulerEmulator(
        args.host,
        args.port,
        signer=signer,
        clock=FrozenClock() if args.frozen_clock else None,
        fire=not args.no_fire,
        admin_port=args.admin_port,
    )
    emulator.start()
    admin = f" admin={emulator.admin_address}" if emulator.admin_address else ""
    print(f"scheduler emulator ready on {emulator.address}{admin}", flush=True)
    serve_until_signalled(emulator.stop)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = [
    "Clock",
    "FireRecord",
    "FrozenClock",
    "RpcError",
    "ScheduleError",
    "SchedulerEmulator",
    "SystemClock",
    "backoff",
    "main",
    "next_fire_time",
    "rfc3339",
    "validate_schedule",
    "zone",
]
