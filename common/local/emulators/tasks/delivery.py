"""The Cloud Tasks engine's moving part: the scheduling loop (rate, concurrency) and each attempt's dispatch."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import OrderedDict

from google.rpc import status_pb2

from common.local.emulators.kit.clock import Clock
from common.local.emulators.kit.dispatch import Answer, Dispatcher, Oidc
from common.local.emulators.kit.rpc import Code
from common.local.emulators.kit.timeconv import micros_text
from common.local.emulators.kit.timeconv import timestamp as _ts
from common.local.emulators.tasks.model import (
    METHODS,
    RUNNING,
    AttemptPb,
    Delivery,
    Queue,
    Task,
    exhausted,
    reserved_header,
    retry_policy,
)
from common.local.emulators.tasks.override import apply_target

log = logging.getLogger("tributary.tasks_emulator")


class Delivering:
    """Dispatch for :class:`~common.local.emulators.tasks.engine.TasksEngine`: due tasks leave their queue's
    heap under the rate and concurrency limits, each attempt is sent from a thread, its answer is recorded and
    the task is retried, dropped or done. Every method runs under ``_cond`` unless it says otherwise."""

    clock: Clock
    dispatcher: Dispatcher
    dedup_window: float
    duplicate_deliveries: int
    _cond: threading.Condition
    _queues: dict[str, Queue]
    _tombstones: OrderedDict[str, float]
    _workers: set[threading.Thread]
    _seq: itertools.count[int]
    _stopping: bool

    def _push(self, q: Queue, task: Task) -> None:
        task.version += 1
        heapq.heappush(q.heap, (task.schedule_time, next(self._seq), task.version, task))
        self._cond.notify_all()

    def _tombstone(self, name: str, now: float) -> None:
        self._tombstones[name] = now
        self._tombstones.move_to_end(name)

    def _remove(self, q: Queue, task: Task, now: float) -> None:
        if q.tasks.get(task.name) is task:
            del q.tasks[task.name]
            task.version += 1
            self._tombstone(task.name, now)
        self._cond.notify_all()

    def _schedule_loop(self) -> None:
        with self._cond:
            while not self._stopping:
                now = self.clock.time()
                now_mono = self.clock.monotonic()
                wait = 5.0
                for q in list(self._queues.values()):
                    if q.state != RUNNING:
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

    def _dispatch(self, q: Queue, task: Task, now: float) -> None:
        """Start one attempt of ``task`` (under the lock): update its counters, send it from a thread."""
        retry_count = task.dispatch_count
        task.version += 1
        task.running += 1
        q.inflight += 1
        task.dispatch_count += 1
        if task.first_dispatch is None:
            task.first_dispatch = now
        attempt = AttemptPb(schedule_time=_ts(task.schedule_time), dispatch_time=_ts(now))
        task.last_attempt = attempt
        http = task.http
        headers = {k: v for k, v in http.headers.items() if not reserved_header(k)}
        headers.update(
            {
                "User-Agent": "Google-Cloud-Tasks",
                "X-CloudTasks-QueueName": q.queue_id,
                "X-CloudTasks-TaskName": task.task_id,
                "X-CloudTasks-TaskRetryCount": str(retry_count),
                "X-CloudTasks-TaskExecutionCount": str(task.execution_count),
                "X-CloudTasks-TaskETA": micros_text(task.schedule_time),
            }
        )
        if retry_count:
            headers["X-CloudTasks-TaskPreviousResponse"] = str(task.previous_response)
            headers["X-CloudTasks-TaskRetryReason"] = task.retry_reason
        oidc = None
        if http.WhichOneof("authorization_header") == "oidc_token":
            oidc = Oidc(http.oidc_token.audience or http.url, http.oidc_token.service_account_email)
        method, url, headers, oidc = apply_target(q.cfg.http_target, METHODS[http.http_method], http.url, headers, oidc)
        delivery = Delivery(
            queue=q,
            task=task,
            attempt=attempt,
            method=method,
            url=url,
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

    def _deliver_duplicate(self, d: Delivery) -> None:
        """An extra delivery of an attempt (``duplicate_deliveries``): sent like it, logged, never counted."""
        try:
            answer = self.dispatcher.send(d.method, d.url, d.headers, d.body, d.deadline, d.oidc)
            log.info(
                "duplicate dispatch queue=%s task=%s attempt=%d status=%s",
                d.queue.queue_id,
                d.task.task_id,
                d.retry_count + 1,
                answer.status if answer.status is not None else answer.code.name,
            )
        finally:
            with self._cond:
                self._workers.discard(threading.current_thread())
                self._cond.notify_all()

    def _deliver(self, d: Delivery) -> None:
        answer = self.dispatcher.send(d.method, d.url, d.headers, d.body, d.deadline, d.oidc)
        with self._cond:
            try:
                self._finish(d, answer)
            finally:
                self._workers.discard(threading.current_thread())
                self._cond.notify_all()

    def _finish(self, d: Delivery, answer: Answer) -> None:
        status = answer.status
        q, task, attempt = d.queue, d.task, d.attempt
        q.inflight -= 1
        task.running -= 1
        now = self.clock.time()
        attempt.response_time.CopyFrom(_ts(now))
        if status is not None:
            attempt.response_status.CopyFrom(status_pb2.Status(code=answer.code, message=f"HTTP {status}"))
            task.response_count += 1
            if not 500 <= status < 600:
                task.execution_count += 1
            task.previous_response = status
            task.retry_reason = f"HTTP {status}"
            outcome = str(status)
        else:
            message = "dispatch_deadline exceeded" if answer.code == Code.DEADLINE_EXCEEDED else answer.detail
            attempt.response_status.CopyFrom(status_pb2.Status(code=answer.code, message=message))
            task.previous_response = 0
            task.retry_reason = answer.code.name
            outcome = task.retry_reason
        live = not self._stopping and self._queues.get(q.name) is q and q.tasks.get(task.name) is task
        if status is not None and 200 <= status < 300:
            verdict = "done"
        elif not live:
            verdict = "discarded"
        elif exhausted(task, retry_policy(q, task), now):
            verdict = "dropped"
        else:
            verdict = "retry"
        log.info(
            "dispatch queue=%s task=%s attempt=%d status=%s elapsed=%.3fs -> %s",
            q.queue_id,
            task.task_id,
            d.retry_count + 1,
            outcome,
            answer.elapsed,
            verdict,
        )
        if not live:
            return
        if verdict in ("done", "dropped"):
            self._remove(q, task, now)
            return
        task.schedule_time = now + retry_policy(q, task).delay(task.dispatch_count)
        self._push(q, task)
