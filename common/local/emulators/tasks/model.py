"""Cloud Tasks state: a queue, a task and its attempt, the retry policy in force, and the request checks."""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass, field
from typing import Any

from google.cloud import tasks_v2

from common.local.emulators.kit.backoff import backoff
from common.local.emulators.kit.dispatch import Oidc
from common.local.emulators.kit.rpc import Code, RpcError
from common.local.emulators.kit.rpc import invalid as _invalid
from common.local.emulators.kit.timeconv import duration as _dur
from common.local.emulators.kit.timeconv import seconds as _from_dur
from common.local.emulators.kit.timeconv import timestamp as _ts
from common.local.emulators.tasks.config import MAX_HEADER_BYTES, MAX_URL_LENGTH, Config, burst_for

RUNNING = int(tasks_v2.Queue.State.RUNNING)
PAUSED = int(tasks_v2.Queue.State.PAUSED)
BASIC = int(tasks_v2.Task.View.BASIC)
FULL = int(tasks_v2.Task.View.FULL)
METHODS = {v: tasks_v2.HttpMethod(v).name for v in range(1, 8)}  # POST .. OPTIONS
POST = int(tasks_v2.HttpMethod.POST)
BODY_METHODS = {int(tasks_v2.HttpMethod.POST), int(tasks_v2.HttpMethod.PUT), int(tasks_v2.HttpMethod.PATCH)}

# Raw protobuf classes: the emulator works on them and wraps the answers in proto-plus at the edge.
QueuePb = tasks_v2.Queue.pb()
TaskPb = tasks_v2.Task.pb()
AttemptPb = tasks_v2.Attempt.pb()
HttpRequestPb = tasks_v2.HttpRequest.pb()
RetryConfigPb = tasks_v2.RetryConfig.pb()
RateLimitsPb = tasks_v2.RateLimits.pb()

# Resource names, with the character sets documented on Queue.name and Task.name.
_PROJECT = r"[A-Za-z0-9\-:.]{1,100}"
_LOCATION = r"[A-Za-z0-9-]{1,63}"
_QUEUE_ID = r"[A-Za-z0-9-]{1,100}"
_TASK_ID = r"[A-Za-z0-9_-]{1,500}"
LOCATION_RE = re.compile(rf"projects/{_PROJECT}/locations/{_LOCATION}")
QUEUE_RE = re.compile(rf"(projects/{_PROJECT}/locations/{_LOCATION})/queues/({_QUEUE_ID})")
TASK_RE = re.compile(rf"(projects/{_PROJECT}/locations/{_LOCATION}/queues/{_QUEUE_ID})/tasks/({_TASK_ID})")
FILTER_RE = re.compile(r'\s*state\s*(:|=|!=)\s*"?([A-Za-z_]+)"?\s*')

TOO_RECENT = (
    "The task cannot be created because a task with this name existed too recently. For more information "
    "about task de-duplication see https://cloud.google.com/tasks/docs/reference/rest/v2/"
    "projects.locations.queues.tasks/create#body.request_body.FIELDS.task."
)


@dataclass(eq=False)
class Queue:
    name: str
    cfg: Config
    state: int = RUNNING
    purge_time: float | None = None
    tasks: dict[str, Task] = field(default_factory=dict)
    heap: list[tuple[float, int, int, Task]] = field(default_factory=list)
    tokens: float = 0.0
    refilled: float = 0.0  # monotonic time of the last token refill
    inflight: int = 0

    @property
    def queue_id(self) -> str:
        return self.name.rsplit("/", 1)[1]

    @property
    def burst(self) -> int:
        return burst_for(self.cfg.rate)

    def refill(self, now_mono: float) -> None:
        self.tokens = min(float(self.burst), self.tokens + (now_mono - self.refilled) * self.cfg.rate)
        self.refilled = now_mono

    def to_pb(self) -> Any:
        c = self.cfg
        retry = RetryConfigPb(
            max_attempts=c.max_attempts,
            min_backoff=_dur(c.min_backoff),
            max_backoff=_dur(c.max_backoff),
            max_doublings=c.max_doublings,
        )
        if c.max_retry_duration > 0:
            retry.max_retry_duration.CopyFrom(_dur(c.max_retry_duration))
        pb = QueuePb(
            name=self.name,
            rate_limits=RateLimitsPb(
                max_dispatches_per_second=c.rate, max_burst_size=self.burst, max_concurrent_dispatches=c.max_concurrent
            ),
            retry_config=retry,
            state=self.state,
        )
        if self.purge_time is not None:
            pb.purge_time.CopyFrom(_ts(self.purge_time))
        if c.logging_ratio is not None:
            pb.stackdriver_logging_config.sampling_ratio = c.logging_ratio
        if c.http_target is not None:
            pb.http_target.CopyFrom(c.http_target)
        return pb


@dataclass(eq=False)
class Task:
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
        pb = TaskPb(
            name=self.name,
            schedule_time=_ts(self.schedule_time),
            create_time=_ts(math.floor(self.create_time)),
            dispatch_deadline=_dur(self.dispatch_deadline),
            dispatch_count=self.dispatch_count,
            response_count=self.response_count,
            view=view,
        )
        pb.http_request.CopyFrom(self.http)
        if view != FULL:
            pb.http_request.ClearField("body")
        if self.first_dispatch is not None:
            pb.first_attempt.dispatch_time.CopyFrom(_ts(self.first_dispatch))
        if self.last_attempt is not None:
            pb.last_attempt.CopyFrom(self.last_attempt)
        if self.retry_override is not None:
            pb.retry_config.CopyFrom(self.retry_override)
        return pb


@dataclass
class Delivery:
    """One HTTP attempt, built under the lock and sent without it."""

    queue: Queue
    task: Task
    attempt: Any
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    deadline: float
    retry_count: int
    oidc: Oidc | None


@dataclass
class Retry:
    """The retry settings in force for one task: its queue's, overridden by the task's own non-zero fields."""

    max_attempts: int
    max_retry_duration: float
    min_backoff: float
    max_backoff: float
    max_doublings: int

    def delay(self, failures: int) -> float:
        """Seconds before the next attempt after ``failures`` failed ones."""
        return backoff(failures, self.min_backoff, self.max_backoff, self.max_doublings)


def exhausted(task: Task, r: Retry, now: float) -> bool:
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


def reserved_header(name: str) -> bool:
    """Headers Cloud Tasks computes or replaces itself (HttpRequest.headers)."""
    n = name.lower()
    return n in ("host", "content-length", "user-agent") or n.startswith(("x-google-", "x-appengine-", "x-cloudtasks-"))


def view_of(view: int) -> int:
    """The Task.View an answer uses: FULL when asked, BASIC otherwise."""
    return FULL if view == FULL else BASIC


def page_token(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode()).decode()


def page_after(token: str, prefix: str) -> str:
    if not token:
        return ""
    try:
        after = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid("page_token is not a token this emulator issued") from None
    if not after.startswith(prefix):
        raise _invalid("page_token belongs to another listing")
    return after


def page_size(size: int, maximum: int) -> int:
    if size < 0:
        raise _invalid(f"page_size must not be negative, got {size}")
    return min(size or maximum, maximum)


def retry_policy(q: Queue, task: Task) -> Retry:
    """The :class:`Retry` in force for ``task`` in ``q``."""
    c = q.cfg
    r = Retry(c.max_attempts, c.max_retry_duration, c.min_backoff, c.max_backoff, c.max_doublings)
    o = task.retry_override
    if o is not None:  # task-level RetryConfig: its non-zero fields win
        r.max_attempts = o.max_attempts or r.max_attempts
        r.max_retry_duration = _from_dur(o.max_retry_duration) or r.max_retry_duration
        r.min_backoff = _from_dur(o.min_backoff) or r.min_backoff
        r.max_backoff = _from_dur(o.max_backoff) or r.max_backoff
        r.max_doublings = o.max_doublings or r.max_doublings
    return r


def validate_http(t: Any) -> Any:
    """The task's HttpRequest, checked as Cloud Tasks does and with the method defaulted to POST."""
    kind = t.WhichOneof("message_type")
    if kind == "app_engine_http_request":
        raise RpcError(Code.UNIMPLEMENTED, "the Cloud Tasks emulator supports only HTTP tasks (http_request)")
    if kind != "http_request":
        raise _invalid("task.http_request is required")
    http = HttpRequestPb()
    http.CopyFrom(t.http_request)
    if not http.url.startswith(("http://", "https://")):
        raise _invalid(f"http_request.url must begin with http:// or https://, got {http.url!r}")
    if len(http.url) > MAX_URL_LENGTH:
        raise _invalid(f"http_request.url is longer than {MAX_URL_LENGTH} characters")
    if not http.http_method:
        http.http_method = POST
    if http.http_method not in METHODS:
        raise _invalid(f"unknown http_request.http_method {http.http_method}")
    if http.body and http.http_method not in BODY_METHODS:
        raise _invalid(f"http_request.body is allowed only with POST, PUT or PATCH, not {METHODS[http.http_method]}")
    if http.WhichOneof("authorization_header") == "oauth_token":
        raise RpcError(Code.UNIMPLEMENTED, "the Cloud Tasks emulator supports oidc_token, not oauth_token")
    if sum(len(k) + len(v) + 4 for k, v in http.headers.items()) >= MAX_HEADER_BYTES:
        raise _invalid("http_request.headers must be smaller than 80KB")
    return http
