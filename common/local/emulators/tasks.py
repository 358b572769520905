"""A local Cloud Tasks emulator that speaks Google's real gRPC API (``google.cloud.tasks.v2.CloudTasks``).

The stock ``google-cloud-tasks`` client works against it unchanged (see
:func:`common.gcp.clients.tasks_client_for`). It keeps queues and tasks in memory and dispatches HTTP target
tasks to their URLs with the ``X-CloudTasks-*`` headers, per-queue rate limits (token bucket), concurrency
limits, Cloud Tasks' retry backoff, named-task de-duplication, and OIDC tokens from a
:class:`~common.local.emulators.oidc.LocalSigner`.

In process::

    with TasksEmulator() as emu:
        client = tasks_client_for(emu.address)
        ...

In the foreground::

    python -m common.local.emulators.tasks --host 127.0.0.1 --port 8123

See ``docs/tasks-emulator.md`` for what is supported and how it differs from Cloud Tasks.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import heapq
import itertools
import logging
import math
import re
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from google.cloud import tasks_v2
from google.protobuf import duration_pb2, empty_pb2, timestamp_pb2
from google.rpc import code_pb2, status_pb2

from common.local.emulators._grpc import RpcError, unary
from common.local.emulators._grpc import invalid as _invalid
from common.local.emulators._grpc import not_found as _not_found
from common.local.emulators.oidc import LocalSigner, default_signer
from common.local.serve import log_to_stderr, serve_until_signalled

log = logging.getLogger("tributary.tasks_emulator")

SERVICE = "google.cloud.tasks.v2.CloudTasks"

# Defaults Cloud Tasks applies to a queue created without settings (docs.cloud.google.com/tasks/docs/
# creating-queues shows them in the `gcloud tasks queues describe` output of a new queue).
DEFAULT_MAX_DISPATCHES_PER_SECOND = 500.0
DEFAULT_MAX_CONCURRENT_DISPATCHES = 1000
DEFAULT_MAX_ATTEMPTS = 100
DEFAULT_MAX_RETRY_DURATION = 0.0  # unlimited
DEFAULT_MIN_BACKOFF = 0.1
DEFAULT_MAX_BACKOFF = 3600.0
DEFAULT_MAX_DOUBLINGS = 16
# Limits documented in the v2 protos (google/cloud/tasks_v2/types/*.py).
MAX_DISPATCHES_PER_SECOND = 500.0
MAX_CONCURRENT_DISPATCHES = 5000
DEFAULT_DISPATCH_DEADLINE = 600.0
MIN_DISPATCH_DEADLINE = 15.0
MAX_DISPATCH_DEADLINE = 1800.0
MAX_SCHEDULE_AHEAD = 30 * 24 * 3600.0
MAX_TASK_BYTES = 100 * 1024
MAX_HEADER_BYTES = 80 * 1024
MAX_URL_LENGTH = 2083
MAX_LIST_TASKS_PAGE = 1000
MAX_LIST_QUEUES_PAGE = 9800

_RUNNING = int(tasks_v2.Queue.State.RUNNING)
_PAUSED = int(tasks_v2.Queue.State.PAUSED)
_BASIC = int(tasks_v2.Task.View.BASIC)
_FULL = int(tasks_v2.Task.View.FULL)
_METHODS = {v: tasks_v2.HttpMethod(v).name for v in range(1, 8)}  # POST .. OPTIONS
_POST = int(tasks_v2.HttpMethod.POST)
_BODY_METHODS = {int(tasks_v2.HttpMethod.POST), int(tasks_v2.HttpMethod.PUT), int(tasks_v2.HttpMethod.PATCH)}

# Raw protobuf classes: the emulator works on them and wraps the answers in proto-plus at the edge.
_QueuePb = tasks_v2.Queue.pb()
_TaskPb = tasks_v2.Task.pb()
_AttemptPb = tasks_v2.Attempt.pb()
_HttpRequestPb = tasks_v2.HttpRequest.pb()
_RetryConfigPb = tasks_v2.RetryConfig.pb()
_RateLimitsPb = tasks_v2.RateLimits.pb()

# Resource names, with the character sets documented on Queue.name and Task.name.
_PROJECT = r"[A-Za-z0-9\-:.]{1,100}"
_LOCATION = r"[A-Za-z0-9-]{1,63}"
_QUEUE_ID = r"[A-Za-z0-9-]{1,100}"
_TASK_ID = r"[A-Za-z0-9_-]{1,500}"
_LOCATION_RE = re.compile(rf"projects/{_PROJECT}/locations/{_LOCATION}")
_QUEUE_RE = re.compile(rf"(projects/{_PROJECT}/locations/{_LOCATION})/queues/({_QUEUE_ID})")
_TASK_RE = re.compile(rf"(projects/{_PROJECT}/locations/{_LOCATION}/queues/{_QUEUE_ID})/tasks/({_TASK_ID})")
_FILTER_RE = re.compile(r'\s*state\s*(:|=|!=)\s*"?([A-Za-z_]+)"?\s*')

_TOO_RECENT = (
    "The task cannot be created because a task with this name existed too recently. For more information "
    "about task de-duplication see https://cloud.google.com/tasks/docs/reference/rest/v2/"
    "projects.locations.queues.tasks/create#body.request_body.FIELDS.task."
)

# HTTP status → google.rpc.Code, for Attempt.response_status (the mapping of google/rpc/code.proto).
_HTTP_TO_RPC = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    404: code_pb2.NOT_FOUND,
    409: code_pb2.ABORTED,
    412: code_pb2.FAILED_PRECONDITION,
    416: code_pb2.OUT_OF_RANGE,
    429: code_pb2.RESOURCE_EXHAUSTED,
    499: code_pb2.CANCELLED,
    500: code_pb2.INTERNAL,
    501: code_pb2.UNIMPLEMENTED,
    503: code_pb2.UNAVAILABLE,
    504: code_pb2.DEADLINE_EXCEEDED,
}


def _ts(t: float) -> timestamp_pb2.Timestamp:
    """Wall-clock seconds → Timestamp, truncated to the microsecond as Cloud Tasks does."""
    micros = math.floor(t * 1_000_000)
    return timestamp_pb2.Timestamp(seconds=micros // 1_000_000, nanos=(micros % 1_000_000) * 1000)


def _eta_header(t: float) -> str:
    """The X-CloudTasks-TaskETA value: the same truncated microsecond as `_ts`.

    Formatting the float with `:.6f` rounds instead, so the header could read one
    microsecond later than the task's schedule_time (a CI run caught exactly that).
    """
    micros = math.floor(t * 1_000_000)
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _from_ts(ts: timestamp_pb2.Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def _dur(seconds: float) -> duration_pb2.Duration:
    nanos = round(seconds * 1e9)
    return duration_pb2.Duration(seconds=nanos // 1_000_000_000, nanos=nanos % 1_000_000_000)


def _from_dur(d: duration_pb2.Duration) -> float:
    return d.seconds + d.nanos / 1e9


# --- queue settings ------------------------------------------------------------------------------


@dataclass
class _Config:
    """The settable part of a queue, with zero meaning "unset" on input as proto3 can't tell them apart."""

    rate: float = DEFAULT_MAX_DISPATCHES_PER_SECOND
    max_concurrent: int = DEFAULT_MAX_CONCURRENT_DISPATCHES
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_retry_duration: float = DEFAULT_MAX_RETRY_DURATION
    min_backoff: float = DEFAULT_MIN_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    max_doublings: int = DEFAULT_MAX_DOUBLINGS
    logging_ratio: float | None = None


# Leaf field path → (attribute of _Config, reader from a raw Queue, default when zero).
_LEAVES: dict[str, tuple[str, Callable[[Any], Any], Any]] = {
    "rate_limits.max_dispatches_per_second": (
        "rate",
        lambda q: q.rate_limits.max_dispatches_per_second,
        DEFAULT_MAX_DISPATCHES_PER_SECOND,
    ),
    "rate_limits.max_concurrent_dispatches": (
        "max_concurrent",
        lambda q: q.rate_limits.max_concurrent_dispatches,
        DEFAULT_MAX_CONCURRENT_DISPATCHES,
    ),
    "retry_config.max_attempts": ("max_attempts", lambda q: q.retry_config.max_attempts, DEFAULT_MAX_ATTEMPTS),
    "retry_config.max_retry_duration": (
        "max_retry_duration",
        lambda q: _from_dur(q.retry_config.max_retry_duration),
        DEFAULT_MAX_RETRY_DURATION,
    ),
    "retry_config.min_backoff": ("min_backoff", lambda q: _from_dur(q.retry_config.min_backoff), DEFAULT_MIN_BACKOFF),
    "retry_config.max_backoff": ("max_backoff", lambda q: _from_dur(q.retry_config.max_backoff), DEFAULT_MAX_BACKOFF),
    "retry_config.max_doublings": (
        "max_doublings",
        lambda q: q.retry_config.max_doublings,
        DEFAULT_MAX_DOUBLINGS,
    ),
}
_GROUPS = {
    "rate_limits": [p for p in _LEAVES if p.startswith("rate_limits.")],
    "retry_config": [p for p in _LEAVES if p.startswith("retry_config.")],
}
_OUTPUT_ONLY = {"state", "purge_time", "rate_limits.max_burst_size"}
_UNSUPPORTED = {"http_target", "app_engine_routing_override"}


def _snake(path: str) -> str:
    """``rateLimits.maxDispatchesPerSecond`` → ``rate_limits.max_dispatches_per_second`` (REST masks)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", path).lower()


def _burst_for(rate: float) -> int:
    """max_burst_size (output only) that Cloud Tasks picks for a rate: rate/5, at least 1 (500/s → 100)."""
    return max(1, int(rate // 5))


def _validate_config(c: _Config) -> None:
    if not 0 < c.rate <= MAX_DISPATCHES_PER_SECOND:
        raise _invalid(f"rate_limits.max_dispatches_per_second must be in (0, 500], got {c.rate}")
    if not 0 < c.max_concurrent <= MAX_CONCURRENT_DISPATCHES:
        raise _invalid(f"rate_limits.max_concurrent_dispatches must be in [1, 5000], got {c.max_concurrent}")
    _validate_retry(c.max_attempts, c.max_retry_duration, c.min_backoff, c.max_backoff, c.max_doublings)
    if c.logging_ratio is not None and not 0.0 <= c.logging_ratio <= 1.0:
        raise _invalid(f"stackdriver_logging_config.sampling_ratio must be in [0, 1], got {c.logging_ratio}")


def _validate_retry(max_attempts: int, max_retry: float, min_b: float, max_b: float, doublings: int) -> None:
    if max_attempts < -1:
        raise _invalid(f"retry_config.max_attempts must be >= -1, got {max_attempts}")
    for name, value in (("max_retry_duration", max_retry), ("min_backoff", min_b), ("max_backoff", max_b)):
        if value < 0:
            raise _invalid(f"retry_config.{name} must not be negative, got {value}s")
    if min_b > max_b:
        raise _invalid(f"retry_config.min_backoff ({min_b}s) must not exceed max_backoff ({max_b}s)")
    if doublings < 0:
        raise _invalid(f"retry_config.max_doublings must not be negative, got {doublings}")


def _set_leaf(cfg: _Config, qpb: Any, path: str) -> None:
    attr, read, default = _LEAVES[path]
    value = read(qpb)
    setattr(cfg, attr, value if value else default)


def _apply(current: _Config | None, qpb: Any, mask: list[str]) -> _Config:
    """The queue settings after applying a request queue ``qpb`` through ``mask`` (empty: what is given)."""
    for name in _UNSUPPORTED:
        if qpb.HasField(name):
            raise RpcError(grpc.StatusCode.UNIMPLEMENTED, f"the Cloud Tasks emulator does not support Queue.{name}")
    cfg = _Config(**vars(current)) if current else _Config()
    if not mask:
        for group, leaves in _GROUPS.items():
            if qpb.HasField(group):
                for leaf in leaves:
                    attr, read, _ = _LEAVES[leaf]
                    if read(qpb):
                        setattr(cfg, attr, read(qpb))
        if qpb.HasField("stackdriver_logging_config"):
            cfg.logging_ratio = qpb.stackdriver_logging_config.sampling_ratio
    else:
        for raw in mask:
            path = _snake(raw)
            if path in _LEAVES:
                _set_leaf(cfg, qpb, path)
            elif path in _GROUPS:
                for leaf in _GROUPS[path]:
                    _set_leaf(cfg, qpb, leaf)
            elif path in ("stackdriver_logging_config", "stackdriver_logging_config.sampling_ratio"):
                has = qpb.HasField("stackdriver_logging_config")
                cfg.logging_ratio = qpb.stackdriver_logging_config.sampling_ratio if has else None
            elif path in _OUTPUT_ONLY or path == "name":
                continue  # output-only fields are ignored; the name can't change
            elif path in _UNSUPPORTED:
                raise RpcError(grpc.StatusCode.UNIMPLEMENTED, f"the Cloud Tasks emulator does not support {path}")
            else:
                raise _invalid(f"update_mask has an unknown Queue field path: {raw!r}")
    _validate_config(cfg)
    return cfg


# --- state ---------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Queue:
    name: str
    cfg: _Config
    state: int = _RUNNING
    purge_time: float | None = None
    tasks: dict[str, _Task] = field(default_factory=dict)
    heap: list[tuple[float, int, int, _Task]] = field(default_factory=list)
    tokens: float = 0.0
    refilled: float = 0.0  # monotonic time of the last token refill
    inflight: int = 0

    @property
    def queue_id(self) -> str:
        return self.name.rsplit("/", 1)[1]

    @property
    def burst(self) -> int:
        return _burst_for(self.cfg.rate)

    def refill(self, now_mono: float) -> None:
        self.tokens = min(float(self.burst), self.tokens + (now_mono - self.refilled) * self.cfg.rate)
        self.refilled = now_mono

    def to_pb(self) -> Any:
        c = self.cfg
        retry = _RetryConfigPb(
            max_attempts=c.max_attempts,
            min_backoff=_dur(c.min_backoff),
            max_backoff=_dur(c.max_backoff),
            max_doublings=c.max_doublings,
        )
        if c.max_retry_duration > 0:
            retry.max_retry_duration.CopyFrom(_dur(c.max_retry_duration))
        pb = _QueuePb(
            name=self.name,
            rate_limits=_RateLimitsPb(
                max_dispatches_per_second=c.rate, max_burst_size=self.burst, max_concurrent_dispatches=c.max_concurrent
            ),
            retry_config=retry,
            state=self.state,
        )
        if self.purge_time is not None:
            pb.purge_time.CopyFrom(_ts(self.purge_time))
        if c.logging_ratio is not None:
            pb.stackdriver_logging_config.sampling_ratio = c.logging_ratio
        return pb


@dataclass(eq=False)
class _Task:
    name: str
    http: Any  # raw HttpRequest, method normalized
    schedule_time: float
    create_time: float
    dispatch_deadline: float
    retry_override: Any | None  # raw RetryConfig from the task, if given
    dispatch_count: int = 0
    response_count: int = 0
    execution_count: int = 0  # responses other than 5xx: X-CloudTasks-TaskExecutionCount
    first_dispatch: float | None = None
    last_attempt: Any | None = None
    previous_response: int = 0
    retry_reason: str = ""
    running: int = 0
    version: int = 0

    @property
    def task_id(self) -> str:
        return self.name.rsplit("/", 1)[1]

    def to_pb(self, view: int) -> Any:
        pb = _TaskPb(
            name=self.name,
            schedule_time=_ts(self.schedule_time),
            create_time=_ts(math.floor(self.create_time)),
            dispatch_deadline=_dur(self.dispatch_deadline),
            dispatch_count=self.dispatch_count,
            response_count=self.response_count,
            view=view,
        )
        pb.http_request.CopyFrom(self.http)
        if view != _FULL:
            pb.http_request.ClearField("body")
        if self.first_dispatch is not None:
            pb.first_attempt.dispatch_time.CopyFrom(_ts(self.first_dispatch))
        if self.last_attempt is not None:
            pb.last_attempt.CopyFrom(self.last_attempt)
        if self.retry_override is not None:
            pb.retry_config.CopyFrom(self.retry_override)
        return pb


@dataclass
class _Delivery:
    """One HTTP attempt, built under the lock and sent without it."""

    queue: _Queue
    task: _Task
    attempt: Any
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    deadline: float
    retry_count: int
    oidc: tuple[str, str] | None  # (audience, service account email)


@dataclass
class _Retry:
    max_attempts: int
    max_retry_duration: float
    min_backoff: float
    max_backoff: float
    max_doublings: int


def _backoff(failures: int, r: _Retry) -> float:
    """Delay before the next attempt after ``failures`` failed attempts.

    min_backoff, doubled max_doublings times, then growing linearly by min_backoff * 2**max_doublings,
    capped at max_backoff (RetryConfig.max_doublings: 10s, 20s, 40s, 80s, 160s, 240s, 300s, ...).
    """
    i = max(0, failures - 1)
    doublings = min(i, r.max_doublings)
    if doublings > 60:
        return r.max_backoff
    base = r.min_backoff * (2**doublings)
    delay = base if i <= r.max_doublings else base * (i - r.max_doublings + 1)
    return min(delay, r.max_backoff)


def _exhausted(task: _Task, r: _Retry, now: float) -> bool:
    """True when no attempt is left: max_attempts *and* max_retry_duration are both satisfied.

    A limit that is unset (max_attempts -1, max_retry_duration 0) counts as satisfied, unless both
    are unset: then the task is retried forever.
    """
    by_attempts = r.max_attempts != -1
    by_time = r.max_retry_duration > 0
    if not by_attempts and not by_time:
        return False
    attempts_done = not by_attempts or task.dispatch_count >= r.max_attempts
    first = task.first_dispatch if task.first_dispatch is not None else now
    time_done = not by_time or now - first >= r.max_retry_duration
    return attempts_done and time_done


def _rpc_code(status: int) -> int:
    if 200 <= status < 300:
        return code_pb2.OK
    if status in _HTTP_TO_RPC:
        return _HTTP_TO_RPC[status]
    if 400 <= status < 500:
        return code_pb2.FAILED_PRECONDITION
    if status >= 500:
        return code_pb2.INTERNAL
    return code_pb2.UNKNOWN


def _reserved_header(name: str) -> bool:
    """Headers Cloud Tasks computes or replaces itself (HttpRequest.headers)."""
    n = name.lower()
    return n in ("host", "content-length", "user-agent") or n.startswith(("x-google-", "x-appengine-", "x-cloudtasks-"))


def _page_token(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode()).decode()


def _after(token: str, prefix: str) -> str:
    if not token:
        return ""
    try:
        after = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid("page_token is not a token this emulator issued") from None
    if not after.startswith(prefix):
        raise _invalid("page_token belongs to another listing")
    return after


def _page_size(size: int, maximum: int) -> int:
    if size < 0:
        raise _invalid(f"page_size must not be negative, got {size}")
    return min(size or maximum, maximum)


# --- the emulator --------------------------------------------------------------------------------


class TasksEmulator:
    """An in-memory Cloud Tasks server on ``host:port`` (0 picks a free port) that dispatches HTTP tasks.

    ``dedup_window`` is how long (s) a deleted or finished task's name stays reserved. ``signer`` mints the
    OIDC tokens (default: :func:`~common.local.emulators.oidc.default_signer`, created on first use).
    ``min_dispatch_deadline`` is the lower bound of ``Task.dispatch_deadline`` (Cloud Tasks: 15 s); tests
    lower it to exercise timeouts quickly. ``duplicate_deliveries`` > 1 sends every attempt that many
    times at once (Cloud Tasks delivers at least once; the fault-injection suite uses 3): the first copy
    is the attempt, the others are extra deliveries whose answers are logged and otherwise ignored.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        dedup_window: float = 3600.0,
        signer: LocalSigner | None = None,
        min_dispatch_deadline: float = MIN_DISPATCH_DEADLINE,
        duplicate_deliveries: int = 1,
    ) -> None:
        self.host = host
        self.duplicate_deliveries = max(1, duplicate_deliveries)
        self.port = port
        self.dedup_window = dedup_window
        self.min_dispatch_deadline = min_dispatch_deadline
        self._signer = signer
        self._cond = threading.Condition(threading.RLock())
        self._queues: dict[str, _Queue] = {}
        self._tombstones: OrderedDict[str, float] = OrderedDict()
        self._workers: set[threading.Thread] = set()
        self._seq = itertools.count()
        self._server: grpc.Server | None = None
        self._scheduler: threading.Thread | None = None
        self._http: httpx.Client | None = None
        self._stopping = False

    # lifecycle ---------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` for :func:`common.gcp.clients.tasks_client_for` (valid after :meth:`start`)."""
        return f"{self.host}:{self.port}"

    @property
    def signer(self) -> LocalSigner:
        with self._cond:
            if self._signer is None:
                self._signer = default_signer()
            return self._signer

    def start(self) -> int:
        """Bind, start serving and dispatching; returns the bound port."""
        if self._server is not None:
            raise RuntimeError("the emulator is already started")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="tasks-emu-rpc"),
            options=[("grpc.so_reuseport", 0)],
        )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, self._handlers()),))
        port = server.add_insecure_port(f"{self.host}:{self.port}")
        if not port:
            raise RuntimeError(f"cannot bind {self.host}:{self.port}")
        self.port = port
        self._http = httpx.Client(
            trust_env=False,
            follow_redirects=True,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
        )
        self._stopping = False
        server.start()
        self._server = server
        self._scheduler = threading.Thread(target=self._schedule_loop, name="tasks-emu-scheduler", daemon=True)
        self._scheduler.start()
        log.info("Cloud Tasks emulator listening on %s", self.address)
        return port

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and dispatching; waits at most about ``timeout`` s for threads to end."""
        with self._cond:
            if self._server is None or self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
            workers = list(self._workers)
        deadline = time.monotonic() + timeout
        self._server.stop(grace=min(1.0, timeout / 2)).wait(max(0.0, deadline - time.monotonic()))
        if self._scheduler is not None:
            self._scheduler.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        if self._http is not None:
            self._http.close()
        self._server = None

    def __enter__(self) -> TasksEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queue is empty and nothing is in flight; False if ``timeout`` s passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if all(not q.tasks and q.inflight == 0 for q in self._queues.values()):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    # gRPC plumbing -----------------------------------------------------------------------------

    def _handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        t = tasks_v2
        empty = empty_pb2.Empty.SerializeToString
        table: list[tuple[str, Callable[[Any], Any], Any, Callable[[Any], bytes]]] = [
            ("ListQueues", self._list_queues, t.ListQueuesRequest, t.ListQueuesResponse.serialize),
            ("GetQueue", self._get_queue, t.GetQueueRequest, t.Queue.serialize),
            ("CreateQueue", self._create_queue, t.CreateQueueRequest, t.Queue.serialize),
            ("UpdateQueue", self._update_queue, t.UpdateQueueRequest, t.Queue.serialize),
            ("DeleteQueue", self._delete_queue, t.DeleteQueueRequest, empty),
            ("PurgeQueue", self._purge_queue, t.PurgeQueueRequest, t.Queue.serialize),
            ("PauseQueue", self._pause_queue, t.PauseQueueRequest, t.Queue.serialize),
            ("ResumeQueue", self._resume_queue, t.ResumeQueueRequest, t.Queue.serialize),
            ("ListTasks", self._list_tasks, t.ListTasksRequest, t.ListTasksResponse.serialize),
            ("GetTask", self._get_task, t.GetTaskRequest, t.Task.serialize),
            ("CreateTask", self._create_task, t.CreateTaskRequest, t.Task.serialize),
            ("DeleteTask", self._delete_task, t.DeleteTaskRequest, empty),
            ("RunTask", self._run_task, t.RunTaskRequest, t.Task.serialize),
        ]
        return {name: unary(name, fn, req, ser, log=log, convert=req.pb) for name, fn, req, ser in table}

    # queues ------------------------------------------------------------------------------------

    def _queue(self, name: str) -> _Queue:
        if not _QUEUE_RE.fullmatch(name):
            raise _invalid(
                f"Invalid queue name {name!r}: expected projects/PROJECT_ID/locations/LOCATION_ID/queues/QUEUE_ID, "
                "where QUEUE_ID has only letters, numbers and hyphens (at most 100 characters)"
            )
        q = self._queues.get(name)
        if q is None:
            raise _not_found(f"Queue {name} does not exist.")
        return q

    def _list_queues(self, req: Any) -> Any:
        if not _LOCATION_RE.fullmatch(req.parent):
            raise _invalid(f"Invalid parent {req.parent!r}: expected projects/PROJECT_ID/locations/LOCATION_ID")
        state_filter: Callable[[int], bool] = lambda s: True  # noqa: E731
        if req.filter.strip():
            m = _FILTER_RE.fullmatch(req.filter)
            names = tasks_v2.Queue.State.__members__
            if not m or m.group(2).upper() not in names:
                raise _invalid(f"Unsupported filter {req.filter!r}: the emulator supports only 'state: STATE'")
            want = names[m.group(2).upper()].value
            state_filter = (lambda s: s != want) if m.group(1) == "!=" else (lambda s: s == want)
        prefix = req.parent + "/queues/"
        size = _page_size(req.page_size, MAX_LIST_QUEUES_PAGE)
        after = _after(req.page_token, prefix)
        with self._cond:
            names_sorted = sorted(
                n for n, q in self._queues.items() if n.startswith(prefix) and n > after and state_filter(q.state)
            )
            page = [self._queues[n].to_pb() for n in names_sorted[:size]]
        resp = tasks_v2.ListQueuesResponse.pb()(queues=page)
        if len(names_sorted) > size:
            resp.next_page_token = _page_token(names_sorted[size - 1])
        return tasks_v2.ListQueuesResponse.wrap(resp)

    def _get_queue(self, req: Any) -> Any:
        with self._cond:
            return tasks_v2.Queue.wrap(self._queue(req.name).to_pb())

    def _create_queue(self, req: Any) -> Any:
        if not _LOCATION_RE.fullmatch(req.parent):
            raise _invalid(f"Invalid parent {req.parent!r}: expected projects/PROJECT_ID/locations/LOCATION_ID")
        name = req.queue.name
        m = _QUEUE_RE.fullmatch(name)
        if not m:
            raise _invalid(
                f"Invalid queue name {name!r}: expected {req.parent}/queues/QUEUE_ID, where QUEUE_ID has only "
                "letters, numbers and hyphens (at most 100 characters)"
            )
        if m.group(1) != req.parent:
            raise _invalid(f"Queue name {name!r} is not in parent {req.parent!r}")
        cfg = _apply(None, req.queue, [])
        with self._cond:
            if name in self._queues:
                raise RpcError(grpc.StatusCode.ALREADY_EXISTS, f"Queue {name} already exists.")
            q = self._new_queue(name, cfg)
            return tasks_v2.Queue.wrap(q.to_pb())

    def _new_queue(self, name: str, cfg: _Config) -> _Queue:
        q = _Queue(name=name, cfg=cfg)
        q.tokens = float(q.burst)
        q.refilled = time.monotonic()
        self._queues[name] = q
        self._cond.notify_all()
        return q

    def _update_queue(self, req: Any) -> Any:
        name = req.queue.name
        if not name:
            raise _invalid("queue.name is required")
        if not _QUEUE_RE.fullmatch(name):
            self._queue(name)  # raises the INVALID_ARGUMENT
        mask = list(req.update_mask.paths)
        with self._cond:
            q = self._queues.get(name)
            cfg = _apply(q.cfg if q else None, req.queue, mask)
            if q is None:  # UpdateQueue creates the queue when it does not exist
                q = self._new_queue(name, cfg)
            else:
                q.cfg = cfg
                q.tokens = min(q.tokens, float(q.burst))
                self._cond.notify_all()
            return tasks_v2.Queue.wrap(q.to_pb())

    def _drop_tasks(self, q: _Queue, now: float) -> None:
        """Forget every task of ``q``, keeping their names out of reuse (caller holds the lock)."""
        for task in q.tasks.values():
            self._tombstone(task.name, now)
        q.tasks.clear()
        q.heap.clear()

    def _delete_queue(self, req: Any) -> Any:
        with self._cond:
            self._drop_tasks(self._queue(req.name), time.time())
            del self._queues[req.name]
            self._cond.notify_all()
        return empty_pb2.Empty()

    def _purge_queue(self, req: Any) -> Any:
        with self._cond:
            q = self._queue(req.name)
            q.purge_time = time.time()
            self._drop_tasks(q, q.purge_time)
            self._cond.notify_all()
            return tasks_v2.Queue.wrap(q.to_pb())

    def _pause_queue(self, req: Any) -> Any:
        with self._cond:
            q = self._queue(req.name)
            q.state = _PAUSED
            return tasks_v2.Queue.wrap(q.to_pb())

    def _resume_queue(self, req: Any) -> Any:
        with self._cond:
            q = self._queue(req.name)
            q.state = _RUNNING
            self._cond.notify_all()
            return tasks_v2.Queue.wrap(q.to_pb())

    # tasks -------------------------------------------------------------------------------------

    def _task(self, name: str) -> tuple[_Queue, _Task]:
        m = _TASK_RE.fullmatch(name)
        if not m:
            raise _invalid(
                f"Invalid task name {name!r}: expected projects/PROJECT_ID/locations/LOCATION_ID/queues/QUEUE_ID"
                "/tasks/TASK_ID, where TASK_ID has only letters, numbers, hyphens and underscores (at most 500)"
            )
        q = self._queue(m.group(1))
        task = q.tasks.get(name)
        if task is None:
            raise _not_found(f"Task {name} does not exist.")
        return q, task

    @staticmethod
    def _view(view: int) -> int:
        return _FULL if view == _FULL else _BASIC

    def _list_tasks(self, req: Any) -> Any:
        prefix = req.parent + "/tasks/"
        size = _page_size(req.page_size, MAX_LIST_TASKS_PAGE)
        after = _after(req.page_token, prefix)
        view = self._view(req.response_view)
        with self._cond:
            q = self._queue(req.parent)
            names = sorted(n for n in q.tasks if n > after)
            page = [q.tasks[n].to_pb(view) for n in names[:size]]
        resp = tasks_v2.ListTasksResponse.pb()(tasks=page)
        if len(names) > size:
            resp.next_page_token = _page_token(names[size - 1])
        return tasks_v2.ListTasksResponse.wrap(resp)

    def _get_task(self, req: Any) -> Any:
        with self._cond:
            _, task = self._task(req.name)
            return tasks_v2.Task.wrap(task.to_pb(self._view(req.response_view)))

    def _create_task(self, req: Any) -> Any:
        t = req.task
        http = self._validate_http(t)
        if len(t.SerializeToString()) > MAX_TASK_BYTES:
            raise _invalid(f"Task size is over the {MAX_TASK_BYTES // 1024}KB limit")
        now = time.time()
        schedule = now
        if t.HasField("schedule_time"):
            schedule = max(now, _from_ts(t.schedule_time))
            if schedule > now + MAX_SCHEDULE_AHEAD:
                raise _invalid("schedule_time must be at most 30 days in the future")
        deadline = DEFAULT_DISPATCH_DEADLINE
        if t.HasField("dispatch_deadline") and _from_dur(t.dispatch_deadline):
            deadline = math.floor(_from_dur(t.dispatch_deadline) * 1000) / 1000
            if not self.min_dispatch_deadline <= deadline <= MAX_DISPATCH_DEADLINE:
                raise _invalid(
                    f"dispatch_deadline must be between {self.min_dispatch_deadline:g}s and "
                    f"{MAX_DISPATCH_DEADLINE:g}s for HTTP tasks, got {deadline:g}s"
                )
        override = None
        if t.HasField("retry_config"):
            r = t.retry_config
            _validate_retry(
                r.max_attempts,
                _from_dur(r.max_retry_duration),
                _from_dur(r.min_backoff),
                _from_dur(r.max_backoff) or math.inf,
                r.max_doublings,
            )
            override = _RetryConfigPb()
            override.CopyFrom(r)
        with self._cond:
            q = self._queue(req.parent)
            if t.name:
                m = _TASK_RE.fullmatch(t.name)
                if m is None:
                    self._task(t.name)  # raises the INVALID_ARGUMENT
                    raise AssertionError("unreachable")
                if m.group(1) != req.parent:
                    raise _invalid(f"Task name {t.name!r} is not in queue {req.parent!r}")
                name = t.name
                if name in q.tasks:
                    raise RpcError(grpc.StatusCode.ALREADY_EXISTS, f"Requested entity already exists: {name}")
                gone = self._tombstones.get(name)
                if gone is not None and now - gone < self.dedup_window:
                    raise RpcError(grpc.StatusCode.ALREADY_EXISTS, _TOO_RECENT)
                self._tombstones.pop(name, None)
            else:
                name = ""
                for _ in range(100):
                    candidate = f"{req.parent}/tasks/{secrets.randbelow(9 * 10**19) + 10**19}"
                    if candidate not in q.tasks and candidate not in self._tombstones:
                        name = candidate
                        break
                if not name:  # pragma: no cover - 100 collisions in a 20-digit space
                    raise RpcError(grpc.StatusCode.INTERNAL, "could not generate a unique task id")
            task = _Task(
                name=name,
                http=http,
                schedule_time=schedule,
                create_time=now,
                dispatch_deadline=deadline,
                retry_override=override,
            )
            q.tasks[name] = task
            self._push(q, task)
            return tasks_v2.Task.wrap(task.to_pb(self._view(req.response_view)))

    @staticmethod
    def _validate_http(t: Any) -> Any:
        kind = t.WhichOneof("message_type")
        if kind == "app_engine_http_request":
            raise RpcError(
                grpc.StatusCode.UNIMPLEMENTED, "the Cloud Tasks emulator supports only HTTP tasks (http_request)"
            )
        if kind != "http_request":
            raise _invalid("task.http_request is required")
        http = _HttpRequestPb()
        http.CopyFrom(t.http_request)
        if not http.url.startswith(("http://", "https://")):
            raise _invalid(f"http_request.url must begin with http:// or https://, got {http.url!r}")
        if len(http.url) > MAX_URL_LENGTH:
            raise _invalid(f"http_request.url is longer than {MAX_URL_LENGTH} characters")
        if not http.http_method:
            http.http_method = _POST
        if http.http_method not in _METHODS:
            raise _invalid(f"unknown http_request.http_method {http.http_method}")
        if http.body and http.http_method not in _BODY_METHODS:
            raise _invalid(
                f"http_request.body is allowed only with POST, PUT or PATCH, not {_METHODS[http.http_method]}"
            )
        if http.WhichOneof("authorization_header") == "oauth_token":
            raise RpcError(
                grpc.StatusCode.UNIMPLEMENTED, "the Cloud Tasks emulator supports oidc_token, not oauth_token"
            )
        if sum(len(k) + len(v) + 4 for k, v in http.headers.items()) >= MAX_HEADER_BYTES:
            raise _invalid("http_request.headers must be smaller than 80KB")
        return http

    def _delete_task(self, req: Any) -> Any:
        with self._cond:
            q, task = self._task(req.name)
            self._remove(q, task, time.time())
        return empty_pb2.Empty()

    def _run_task(self, req: Any) -> Any:
        with self._cond:
            q, task = self._task(req.name)
            # RunTask dispatches even if the queue is paused, rate-limited or the task is running.
            self._dispatch(q, task, time.time())
            return tasks_v2.Task.wrap(task.to_pb(self._view(req.response_view)))

    # dispatch ----------------------------------------------------------------------------------

    def _push(self, q: _Queue, task: _Task) -> None:
        task.version += 1
        heapq.heappush(q.heap, (task.schedule_time, next(self._seq), task.version, task))
        self._cond.notify_all()

    def _tombstone(self, name: str, now: float) -> None:
        self._tombstones[name] = now
        self._tombstones.move_to_end(name)

    def _remove(self, q: _Queue, task: _Task, now: float) -> None:
        if q.tasks.get(task.name) is task:
            del q.tasks[task.name]
            task.version += 1
            self._tombstone(task.name, now)
        self._cond.notify_all()

    def _schedule_loop(self) -> None:
        with self._cond:
            while not self._stopping:
                now = time.time()
                now_mono = time.monotonic()
                wait = 5.0
                for q in list(self._queues.values()):
                    if q.state != _RUNNING:
                        continue
                    q.refill(now_mono)
                    while q.heap:
                        when, _, version, task = q.heap[0]
                        if q.tasks.get(task.name) is not task or task.version != version or task.running:
                            heapq.heappop(q.heap)  # stale entry: deleted, rescheduled or running
                            continue
                        if when > now:
                            wait = min(wait, when - now)
                            break
                        if q.inflight >= q.cfg.max_concurrent:
                            break  # a finishing dispatch notifies
                        if q.tokens < 1 - 1e-9:
                            wait = min(wait, (1 - q.tokens) / q.cfg.rate)
                            break
                        heapq.heappop(q.heap)
                        q.tokens -= 1
                        self._dispatch(q, task, now)
                while self._tombstones:
                    name, when = next(iter(self._tombstones.items()))
                    if now - when < self.dedup_window:
                        break
                    del self._tombstones[name]
                self._cond.wait(max(wait, 0.001))

    def _dispatch(self, q: _Queue, task: _Task, now: float) -> None:
        """Start one attempt of ``task`` (under the lock): update its counters, send it from a thread."""
        retry_count = task.dispatch_count
        task.version += 1
        task.running += 1
        q.inflight += 1
        task.dispatch_count += 1
        if task.first_dispatch is None:
            task.first_dispatch = now
        attempt = _AttemptPb(schedule_time=_ts(task.schedule_time), dispatch_time=_ts(now))
        task.last_attempt = attempt
        http = task.http
        headers = {k: v for k, v in http.headers.items() if not _reserved_header(k)}
        headers.update(
            {
                "User-Agent": "Google-Cloud-Tasks",
                "X-CloudTasks-QueueName": q.queue_id,
                "X-CloudTasks-TaskName": task.task_id,
                "X-CloudTasks-TaskRetryCount": str(retry_count),
                "X-CloudTasks-TaskExecutionCount": str(task.execution_count),
                "X-CloudTasks-TaskETA": _eta_header(task.schedule_time),
            }
        )
        if retry_count:
            headers["X-CloudTasks-TaskPreviousResponse"] = str(task.previous_response)
            headers["X-CloudTasks-TaskRetryReason"] = task.retry_reason
        oidc = None
        if http.WhichOneof("authorization_header") == "oidc_token":
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            oidc = (http.oidc_token.audience or http.url, http.oidc_token.service_account_email)
        delivery = _Delivery(
            queue=q,
            task=task,
            attempt=attempt,
            method=_METHODS[http.http_method],
            url=http.url,
            headers=headers,
            body=http.body,
            deadline=task.dispatch_deadline,
            retry_count=retry_count,
            oidc=oidc,
        )
        worker = threading.Thread(target=self._deliver, args=(delivery,), name="tasks-emu-dispatch", daemon=True)
        self._workers.add(worker)
        worker.start()
        for _ in range(self.duplicate_deliveries - 1):
            ghost = threading.Thread(
                target=self._deliver_duplicate, args=(delivery,), name="tasks-emu-dup", daemon=True
            )
            self._workers.add(ghost)
            ghost.start()

    def _deliver_duplicate(self, d: _Delivery) -> None:
        """An extra delivery of an attempt (``duplicate_deliveries``): sent like it, logged, never counted."""
        outcome = ""
        try:
            headers = dict(d.headers)
            if d.oidc is not None:
                headers["Authorization"] = f"Bearer {self.signer.sign_id_token(*d.oidc)}"
            assert self._http is not None
            resp = self._http.request(
                d.method, d.url, headers=headers, content=d.body or None, timeout=httpx.Timeout(d.deadline)
            )
            outcome = str(resp.status_code)
        except Exception as e:  # an extra copy's failure changes nothing
            outcome = type(e).__name__
        finally:
            log.info(
                "duplicate dispatch queue=%s task=%s attempt=%d status=%s",
                d.queue.queue_id,
                d.task.task_id,
                d.retry_count + 1,
                outcome,
            )
            with self._cond:
                self._workers.discard(threading.current_thread())
                self._cond.notify_all()

    def _deliver(self, d: _Delivery) -> None:
        status: int | None = None
        error = code_pb2.OK
        message = ""
        started = time.monotonic()
        try:
            headers = dict(d.headers)
            if d.oidc is not None:
                audience, email = d.oidc
                headers["Authorization"] = f"Bearer {self.signer.sign_id_token(audience, email)}"
            assert self._http is not None
            resp = self._http.request(
                d.method, d.url, headers=headers, content=d.body or None, timeout=httpx.Timeout(d.deadline)
            )
            status = resp.status_code
            if time.monotonic() - started > d.deadline:  # httpx times each phase; the deadline is overall
                status, error, message = None, code_pb2.DEADLINE_EXCEEDED, "dispatch_deadline exceeded"
        except httpx.TimeoutException:
            error, message = code_pb2.DEADLINE_EXCEEDED, "dispatch_deadline exceeded"
        except httpx.HTTPError as e:
            error, message = code_pb2.UNAVAILABLE, f"{type(e).__name__}: {e}"
        except Exception as e:  # never lose the attempt's bookkeeping
            log.exception("dispatch of %s failed", d.task.name)
            error, message = code_pb2.INTERNAL, f"{type(e).__name__}: {e}"
        elapsed = time.monotonic() - started
        with self._cond:
            try:
                self._finish(d, status, error, message, elapsed)
            finally:
                self._workers.discard(threading.current_thread())
                self._cond.notify_all()

    def _finish(self, d: _Delivery, status: int | None, error: int, message: str, elapsed: float) -> None:
        q, task, attempt = d.queue, d.task, d.attempt
        q.inflight -= 1
        task.running -= 1
        now = time.time()
        attempt.response_time.CopyFrom(_ts(now))
        if status is not None:
            attempt.response_status.CopyFrom(status_pb2.Status(code=_rpc_code(status), message=f"HTTP {status}"))
            task.response_count += 1
            if not 500 <= status < 600:
                task.execution_count += 1
            task.previous_response = status
            task.retry_reason = f"HTTP {status}"
            outcome = str(status)
        else:
            attempt.response_status.CopyFrom(status_pb2.Status(code=error, message=message))
            task.previous_response = 0
            task.retry_reason = code_pb2.Code.Name(error)
            outcome = task.retry_reason
        live = not self._stopping and self._queues.get(q.name) is q and q.tasks.get(task.name) is task
        if status is not None and 200 <= status < 300:
            verdict = "done"
        elif not live:
            verdict = "discarded"
        elif _exhausted(task, self._retry(q, task), now):
            verdict = "dropped"
        else:
            verdict = "retry"
        log.info(
            "dispatch queue=%s task=%s attempt=%d status=%s elapsed=%.3fs -> %s",
            q.queue_id,
            task.task_id,
            d.retry_count + 1,
            outcome,
            elapsed,
            verdict,
        )
        if not live:
            return
        if verdict in ("done", "dropped"):
            self._remove(q, task, now)
            return
        task.schedule_time = now + _backoff(task.dispatch_count, self._retry(q, task))
        self._push(q, task)

    @staticmethod
    def _retry(q: _Queue, task: _Task) -> _Retry:
        c = q.cfg
        r = _Retry(c.max_attempts, c.max_retry_duration, c.min_backoff, c.max_backoff, c.max_doublings)
        o = task.retry_override
        if o is not None:  # task-level RetryConfig: its non-zero fields win
            r.max_attempts = o.max_attempts or r.max_attempts
            r.max_retry_duration = _from_dur(o.max_retry_duration) or r.max_retry_duration
            r.min_backoff = _from_dur(o.min_backoff) or r.min_backoff
            r.max_backoff = _from_dur(o.max_backoff) or r.max_backoff
            r.max_doublings = o.max_doublings or r.max_doublings
        return r


# --- command line --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.local.emulators.tasks",
        description="Local Cloud Tasks emulator speaking google.cloud.tasks.v2.CloudTasks over plaintext gRPC.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8123, help="port to listen on; 0 picks one (default 8123)")
    parser.add_argument(
        "--dedup-window", type=float, default=3600.0, help="seconds a finished task's name stays taken (3600)"
    )
    parser.add_argument(
        "--oidc-key-file", default=None, help="RSA key for OIDC tokens (default: $TRIBUTARY_OIDC_KEY_FILE or a new key)"
    )
    parser.add_argument(
        "--min-dispatch-deadline",
        type=float,
        default=MIN_DISPATCH_DEADLINE,
        help="lowest accepted Task.dispatch_deadline in seconds (Cloud Tasks: 15)",
    )
    parser.add_argument(
        "--duplicate-deliveries",
        type=int,
        default=1,
        help="send every attempt N times at once, to test idempotent targets (default 1; faults suite: 3)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)
    log_to_stderr(args.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per dispatch is ours
    signer = LocalSigner(args.oidc_key_file) if args.oidc_key_file else None
    emu = TasksEmulator(
        args.host,
        args.port,
        dedup_window=args.dedup_window,
        signer=signer,
        min_dispatch_deadline=args.min_dispatch_deadline,
        duplicate_deliveries=args.duplicate_deliveries,
    )
    emu.start()
    print(f"Cloud Tasks emulator listening on {emu.address}", flush=True)
    serve_until_signalled(emu.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
