"""The Cloud Tasks engine: queues and tasks in memory and the rules of each call, with no transport.

Calls take the raw ``google.cloud.tasks.v2`` request protobufs and return raw response protobufs; a refusal
raises :class:`~common.local.emulators.kit.rpc.RpcError` with its canonical code, which a server maps to its
transport's status. Time comes from an injectable :class:`~common.local.emulators.kit.clock.Clock`.
"""

from __future__ import annotations

import itertools
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from google.cloud import tasks_v2
from google.protobuf import empty_pb2

from common.local.emulators.kit.clock import Clock, make_clock
from common.local.emulators.kit.dispatch import Dispatcher
from common.local.emulators.kit.rpc import Code, RpcError
from common.local.emulators.kit.rpc import invalid as _invalid
from common.local.emulators.kit.rpc import not_found as _not_found
from common.local.emulators.kit.timeconv import from_timestamp as _from_ts
from common.local.emulators.kit.timeconv import seconds as _from_dur
from common.local.emulators.oidc import LocalSigner, default_signer
from common.local.emulators.tasks.config import (
    DEFAULT_DISPATCH_DEADLINE,
    MAX_DISPATCH_DEADLINE,
    MAX_LIST_QUEUES_PAGE,
    MAX_LIST_TASKS_PAGE,
    MAX_SCHEDULE_AHEAD,
    MAX_TASK_BYTES,
    MIN_DISPATCH_DEADLINE,
    Config,
    apply_mask,
    validate_retry,
)
from common.local.emulators.tasks.delivery import Delivering
from common.local.emulators.tasks.model import (
    FILTER_RE,
    LOCATION_RE,
    PAUSED,
    QUEUE_RE,
    RUNNING,
    TASK_RE,
    TOO_RECENT,
    Queue,
    RetryConfigPb,
    Task,
    page_after,
    page_size,
    page_token,
    validate_http,
    view_of,
)


class TasksEngine(Delivering):
    """Cloud Tasks in memory: queues, tasks, de-duplication and dispatch of HTTP tasks.

    ``dedup_window`` is how long (s) a deleted or finished task's name stays reserved. ``signer`` mints the
    OIDC tokens (default: :func:`~common.local.emulators.oidc.default_signer`, created on first use).
    ``min_dispatch_deadline`` is the lower bound of ``Task.dispatch_deadline`` (Cloud Tasks: 15 s); tests
    lower it to exercise timeouts quickly. ``duplicate_deliveries`` > 1 sends every attempt that many
    times at once (Cloud Tasks delivers at least once; the fault-injection suite uses 3): the first copy
    is the attempt, the others are extra deliveries whose answers are logged and otherwise ignored.
    ``clock``: ``None`` for real time, a :class:`~common.local.emulators.kit.clock.FrozenClock` or an aware
    ``datetime`` (frozen there) for tests that move time with :meth:`advance`, or any ``Clock``.
    """

    def __init__(
        self,
        *,
        dedup_window: float = 3600.0,
        signer: LocalSigner | None = None,
        min_dispatch_deadline: float = MIN_DISPATCH_DEADLINE,
        duplicate_deliveries: int = 1,
        clock: Clock | datetime | None = None,
    ) -> None:
        self.clock = make_clock(clock)
        self.duplicate_deliveries = max(1, duplicate_deliveries)
        self.dedup_window = dedup_window
        self.min_dispatch_deadline = min_dispatch_deadline
        self._signer = signer
        self.dispatcher = Dispatcher(lambda: self.signer)
        self._cond = threading.Condition(threading.RLock())
        self._queues: dict[str, Queue] = {}
        self._tombstones: OrderedDict[str, float] = OrderedDict()
        self._workers: set[threading.Thread] = set()
        self._seq = itertools.count()
        self._loop: threading.Thread | None = None
        self._stopping = False

    # lifecycle ---------------------------------------------------------------------------------

    @property
    def signer(self) -> LocalSigner:
        with self._cond:
            if self._signer is None:
                self._signer = default_signer()
            return self._signer

    def start(self) -> None:
        """Start dispatching."""
        self.dispatcher.open()
        self._stopping = False
        self._loop = threading.Thread(target=self._schedule_loop, name="tasks-emu-scheduler", daemon=True)
        self._loop.start()

    def stop(self, deadline: float) -> None:
        """Stop dispatching; waits for threads until the monotonic ``deadline``."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            workers = list(self._workers)
        if self._loop is not None:
            self._loop.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self.dispatcher.close()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queue is empty and nothing is in flight; False if ``timeout`` s passed first."""
        return self._wait(lambda: all(not q.tasks and q.inflight == 0 for q in self._queues.values()), timeout)

    def settle(self, timeout: float = 5.0) -> bool:
        """Wait until no attempt is in flight (its answer recorded); False if ``timeout`` s passed first."""
        return self._wait(lambda: all(q.inflight == 0 for q in self._queues.values()), timeout)

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def queue_count(self) -> int:
        with self._cond:
            return len(self._queues)

    def advance(self, seconds: float, *, timeout: float = 5.0) -> None:
        """Let the attempts in flight finish, then move the clock ``seconds`` on and wake the scheduler, which
        dispatches what fell due (a frozen clock moves only here). Raises ``RuntimeError`` if attempts are
        still in flight after ``timeout`` s."""
        if seconds < 0:
            raise ValueError("the emulator's clock only moves forward")
        if not self.settle(timeout):
            raise RuntimeError(f"attempts still in flight after {timeout:g} s")
        with self._cond:
            self.clock.advance(seconds)
            self._cond.notify_all()

    # queues ------------------------------------------------------------------------------------

    def _queue(self, name: str) -> Queue:
        if not QUEUE_RE.fullmatch(name):
            raise _invalid(
                f"Invalid queue name {name!r}: expected projects/PROJECT_ID/locations/LOCATION_ID/queues/QUEUE_ID, "
                "where QUEUE_ID has only letters, numbers and hyphens (at most 100 characters)"
            )
        q = self._queues.get(name)
        if q is None:
            raise _not_found(f"Queue {name} does not exist.")
        return q

    def list_queues(self, req: Any) -> Any:
        if not LOCATION_RE.fullmatch(req.parent):
            raise _invalid(f"Invalid parent {req.parent!r}: expected projects/PROJECT_ID/locations/LOCATION_ID")
        state_filter: Callable[[int], bool] = lambda s: True  # noqa: E731
        if req.filter.strip():
            m = FILTER_RE.fullmatch(req.filter)
            names = tasks_v2.Queue.State.__members__
            if not m or m.group(2).upper() not in names:
                raise _invalid(f"Unsupported filter {req.filter!r}: the emulator supports only 'state: STATE'")
            want = names[m.group(2).upper()].value
            state_filter = (lambda s: s != want) if m.group(1) == "!=" else (lambda s: s == want)
        prefix = req.parent + "/queues/"
        size = page_size(req.page_size, MAX_LIST_QUEUES_PAGE)
        after = page_after(req.page_token, prefix)
        with self._cond:
            names_sorted = sorted(
                n for n, q in self._queues.items() if n.startswith(prefix) and n > after and state_filter(q.state)
            )
            page = [self._queues[n].to_pb() for n in names_sorted[:size]]
        resp = tasks_v2.ListQueuesResponse.pb()(queues=page)
        if len(names_sorted) > size:
            resp.next_page_token = page_token(names_sorted[size - 1])
        return resp

    def get_queue(self, req: Any) -> Any:
        with self._cond:
            return self._queue(req.name).to_pb()

    def create_queue(self, req: Any) -> Any:
        if not LOCATION_RE.fullmatch(req.parent):
            raise _invalid(f"Invalid parent {req.parent!r}: expected projects/PROJECT_ID/locations/LOCATION_ID")
        name = req.queue.name
        m = QUEUE_RE.fullmatch(name)
        if not m:
            raise _invalid(
                f"Invalid queue name {name!r}: expected {req.parent}/queues/QUEUE_ID, where QUEUE_ID has only "
                "letters, numbers and hyphens (at most 100 characters)"
            )
        if m.group(1) != req.parent:
            raise _invalid(f"Queue name {name!r} is not in parent {req.parent!r}")
        cfg = apply_mask(None, req.queue, [])
        with self._cond:
            if name in self._queues:
                raise RpcError(Code.ALREADY_EXISTS, f"Queue {name} already exists.")
            q = self._new_queue(name, cfg)
            return q.to_pb()

    def _new_queue(self, name: str, cfg: Config) -> Queue:
        q = Queue(name=name, cfg=cfg)
        q.tokens = float(q.burst)
        q.refilled = self.clock.monotonic()
        self._queues[name] = q
        self._cond.notify_all()
        return q

    def update_queue(self, req: Any) -> Any:
        name = req.queue.name
        if not name:
            raise _invalid("queue.name is required")
        if not QUEUE_RE.fullmatch(name):
            self._queue(name)  # raises the INVALID_ARGUMENT
        mask = list(req.update_mask.paths)
        with self._cond:
            q = self._queues.get(name)
            cfg = apply_mask(q.cfg if q else None, req.queue, mask)
            if q is None:  # UpdateQueue creates the queue when it does not exist
                q = self._new_queue(name, cfg)
            else:
                q.cfg = cfg
                q.tokens = min(q.tokens, float(q.burst))
                self._cond.notify_all()
            return q.to_pb()

    def _drop_tasks(self, q: Queue, now: float) -> None:
        """Forget every task of ``q``, keeping their names out of reuse (caller holds the lock)."""
        for task in q.tasks.values():
            self._tombstone(task.name, now)
        q.tasks.clear()
        q.heap.clear()

    def delete_queue(self, req: Any) -> Any:
        with self._cond:
            self._drop_tasks(self._queue(req.name), self.clock.time())
            del self._queues[req.name]
            self._cond.notify_all()
        return empty_pb2.Empty()

    def purge_queue(self, req: Any) -> Any:
        with self._cond:
            q = self._queue(req.name)
            q.purge_time = self.clock.time()
            self._drop_tasks(q, q.purge_time)
            self._cond.notify_all()
            return q.to_pb()

    def pause_queue(self, req: Any) -> Any:
        with self._cond:
            q = self._queue(req.name)
            q.state = PAUSED
            return q.to_pb()

    def resume_queue(self, req: Any) -> Any:
        with self._cond:
            q = self._queue(req.name)
            q.state = RUNNING
            self._cond.notify_all()
            return q.to_pb()

    # tasks -------------------------------------------------------------------------------------

    def _task(self, name: str) -> tuple[Queue, Task]:
        m = TASK_RE.fullmatch(name)
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

    def list_tasks(self, req: Any) -> Any:
        prefix = req.parent + "/tasks/"
        size = page_size(req.page_size, MAX_LIST_TASKS_PAGE)
        after = page_after(req.page_token, prefix)
        view = view_of(req.response_view)
        with self._cond:
            q = self._queue(req.parent)
            names = sorted(n for n in q.tasks if n > after)
            page = [q.tasks[n].to_pb(view) for n in names[:size]]
        resp = tasks_v2.ListTasksResponse.pb()(tasks=page)
        if len(names) > size:
            resp.next_page_token = page_token(names[size - 1])
        return resp

    def get_task(self, req: Any) -> Any:
        with self._cond:
            _, task = self._task(req.name)
            return task.to_pb(view_of(req.response_view))

    def create_task(self, req: Any) -> Any:
        t = req.task
        http = validate_http(t)
        if len(t.SerializeToString()) > MAX_TASK_BYTES:
            raise _invalid(f"Task size is over the {MAX_TASK_BYTES // 1024}KB limit")
        now = self.clock.time()
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
            validate_retry(
                r.max_attempts,
                _from_dur(r.max_retry_duration),
                _from_dur(r.min_backoff),
                _from_dur(r.max_backoff) or math.inf,
                r.max_doublings,
            )
            override = RetryConfigPb()
            override.CopyFrom(r)
        with self._cond:
            q = self._queue(req.parent)
            if t.name:
                m = TASK_RE.fullmatch(t.name)
                if m is None:
                    self._task(t.name)  # raises the INVALID_ARGUMENT
                    raise AssertionError("unreachable")
                if m.group(1) != req.parent:
                    raise _invalid(f"Task name {t.name!r} is not in queue {req.parent!r}")
                name = t.name
                if name in q.tasks:
                    raise RpcError(Code.ALREADY_EXISTS, f"Requested entity already exists: {name}")
                gone = self._tombstones.get(name)
                if gone is not None and now - gone < self.dedup_window:
                    raise RpcError(Code.ALREADY_EXISTS, TOO_RECENT)
                self._tombstones.pop(name, None)
            else:
                name = ""
                for _ in range(100):
                    candidate = f"{req.parent}/tasks/{secrets.randbelow(9 * 10**19) + 10**19}"
                    if candidate not in q.tasks and candidate not in self._tombstones:
                        name = candidate
                        break
                if not name:  # pragma: no cover - 100 collisions in a 20-digit space
                    raise RpcError(Code.INTERNAL, "could not generate a unique task id")
            task = Task(
                name=name,
                http=http,
                schedule_time=schedule,
                create_time=now,
                dispatch_deadline=deadline,
                retry_override=override,
            )
            q.tasks[name] = task
            self._push(q, task)
            return task.to_pb(view_of(req.response_view))

    def delete_task(self, req: Any) -> Any:
        with self._cond:
            q, task = self._task(req.name)
            self._remove(q, task, self.clock.time())
        return empty_pb2.Empty()

    def run_task(self, req: Any) -> Any:
        with self._cond:
            q, task = self._task(req.name)
            # RunTask dispatches even if the queue is paused, rate-limited or the task is running.
            self._dispatch(q, task, self.clock.time())
            return task.to_pb(view_of(req.response_view))
