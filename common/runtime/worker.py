"""The embedded executor's loops: workers that run claimed tasks, the event drain, the cron clock, the reaper.

A worker claims a task row (``common.embedded.queue``), runs it with :func:`common.runtime.ingest.run_task`
(the same function the Cloud Tasks target calls, so outcomes, events and retries are the same), and then
deletes the row or puts it back with the queue's backoff. A heartbeat renews the leases of the running
tasks. The clock fires each source's cron in its time zone, once per firing even across restarts or
beside another process (the firing is claimed in the SQLite file), and when several were missed fires
only the latest, as Cloud Scheduler does not catch up either.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from common.core.errors import TransientError
from common.embedded.bus import EmbeddedBus
from common.embedded.clock import ScheduleBook
from common.embedded.queue import Claim, SqliteDispatcher
from common.runtime import executors, reaper
from common.runtime.ingest import Delivery, TaskOutcome, run_task
from common.settings import Settings, settings, use_settings
from common.sources import all_sources

__all__ = ["Executor", "latest_firing"]

log = logging.getLogger("tributary.worker")

#: Seconds a worker process may take to import and start its workers.
CHILD_START_TIMEOUT = 60.0
#: How often a worker process checks that its parent still runs, seconds.
PARENT_CHECK = 0.2
#: The longest an idle worker sleeps before looking for a task again, seconds.
IDLE_MAX = 0.5
#: How often the clock looks at the crons, the outbox is drained, and the reaper runs, seconds.
CLOCK_TICK = 1.0
DRAIN_TICK = 1.0
REAPER_EVERY = 600.0


def _worker_process(s: Settings, workers: int, parent: int, ready: Any, stop: Any, log_level: int | None) -> None:
    """A worker process of :class:`Executor`: its workers until ``stop`` is set. When the parent process dies
    (``kill -9``), this one ends at once too, as a process group would: its running tasks' rows stay leased by a
    dead process and run again on restart, never beside a new executor's.

    ``log_level``: the parent's, when it logs (a spawned process starts with no logging set up)."""
    if log_level is not None:
        logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
    with use_settings(s):
        executor = Executor(s, workers=workers, processes=1).start()
        ready.set()
        while not stop.wait(PARENT_CHECK):
            if os.getppid() != parent:
                os._exit(1)  # no cleanup: what a killed process group leaves behind, the leases account for
        executor.stop()


def latest_firing(cron: str, zone: str, after: datetime, now: datetime) -> datetime | None:
    """The latest time in ``(after, now]`` at which ``cron`` fires in time zone ``zone``, or None."""
    from croniter import croniter  # 30 ms, for the clock only

    tz = ZoneInfo(zone)
    it = croniter(cron, after.astimezone(tz))
    fire: datetime | None = None
    while True:
        nxt: datetime = it.get_next(datetime)
        if nxt > now:
            return fire
        fire = nxt


class Executor:
    """The workers, heartbeat, event drain, clock and reaper of one embedded process, as daemon threads."""

    def __init__(
        self,
        s: Settings | None = None,
        *,
        workers: int | None = None,
        processes: int | None = None,
        clock: bool = False,
        reap: bool = False,
        submit: Callable[[str], object] | None = None,
    ) -> None:
        self.settings = s or settings()
        dispatch = executors.dispatchers(self.settings).get("embedded")
        if not isinstance(dispatch, SqliteDispatcher):
            dispatch = SqliteDispatcher(self.settings.sqlite_path, lease=self.settings.embedded_lease)
        self.queue = dispatch
        self.workers = workers or self.settings.embedded_workers
        wanted = self.settings.embedded_processes if processes is None else processes
        self.processes = wanted or os.cpu_count() or 1
        self.children: list[tuple[Any, Any]] = []  # (process, its ready event)
        self._stop_children: Any = None
        self.clock, self.reap, self.submit = clock, reap, submit
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.running: set[str] = set()
        self._running_lock = threading.Lock()
        self.finished = 0

    def start(self) -> Executor:
        """Release a killed process's leases, then start the threads."""
        released = self.queue.recover()
        if released:
            log.info("released %d task(s) of a process that stopped mid-task; they run again", released)
        loops: list[tuple[str, Callable[[], None]]] = [(f"worker-{i}", self._work) for i in range(self.workers)]
        loops.append(("heartbeat", self._heartbeat))
        bus = executors.events(self.settings)
        if isinstance(bus, EmbeddedBus):
            loops.append(("drain", lambda: self._every(DRAIN_TICK, bus.drain)))
        if self.clock and self.submit is not None:
            book = ScheduleBook(self.settings.sqlite_path)
            loops.append(("clock", lambda: self._every(CLOCK_TICK, lambda: self.tick(book))))
        if self.reap:
            loops.append(("reaper", lambda: self._every(REAPER_EVERY, reaper.reap)))
        for name, target in loops:
            thread = threading.Thread(target=target, name=f"tributary-{name}", daemon=True)
            thread.start()
            self.threads.append(thread)
        if self.processes > 1:
            self._start_children(self.processes - 1)
        return self

    def _start_children(self, n: int) -> None:
        """Start ``n`` worker processes (workers and heartbeat only: the clock and the reaper stay here) and
        wait until each has started its workers. They share the SQLite file, so one process's threads do not
        hold the others back on one interpreter lock; they stop with this executor, or when this process dies.

        Raises:
            RuntimeError: a worker process did not start within a minute.
        """
        ctx = multiprocessing.get_context("spawn")  # a fork would copy this process's threads' locks mid-use
        self._stop_children = ctx.Event()
        root = logging.getLogger()
        log_level = root.level if root.handlers else None
        for i in range(n):
            ready = ctx.Event()
            child = ctx.Process(
                target=_worker_process,
                args=(self.settings, self.workers, os.getpid(), ready, self._stop_children, log_level),
                name=f"tributary-worker-process-{i + 1}",
                daemon=True,
            )
            child.start()
            self.children.append((child, ready))
        for child, ready in self.children:
            if not ready.wait(CHILD_START_TIMEOUT):
                self.stop(timeout=1.0)
                raise RuntimeError(f"worker process {child.name} did not start within {CHILD_START_TIMEOUT:.0f} s")
        log.info("%d worker processes of %d threads beside this one", n, self.workers)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask every loop to stop and wait up to ``timeout`` for the running tasks (their rows stay leased
        and run again after the lease when they do not finish)."""
        self.stopping.set()
        if self._stop_children is not None:
            self._stop_children.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for child, _ in self.children:
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():  # its running tasks' rows stay leased and run again after the lease
                child.terminate()
                child.join(1.0)
        self.children.clear()

    def _every(self, seconds: float, action: Callable[[], object]) -> None:
        while not self.stopping.is_set():
            try:
                action()
            except Exception:  # a loop must outlive one failure; the next round tries again
                log.exception("%s failed", threading.current_thread().name)
            self.stopping.wait(seconds)

    def _heartbeat(self) -> None:
        while not self.stopping.wait(self.queue.lease / 3):
            with self._running_lock:
                ids = list(self.running)
            self.queue.renew(ids)

    def _work(self) -> None:
        idle = 0.02
        while not self.stopping.is_set():
            try:
                claim = self.queue.claim()
            except TransientError as exc:
                log.warning("could not claim a task: %s", exc)
                claim = None
            if claim is None:
                self.stopping.wait(idle)
                idle = min(IDLE_MAX, idle * 2)
                continue
            idle = 0.02
            self.run(claim)

    def run(self, claim: Claim) -> TaskOutcome:
        """Run one claimed task and settle its row: gone, or back with the queue's backoff."""
        with self._running_lock:
            self.running.add(claim.task_id)
        try:
            delivery = Delivery(attempt=claim.attempt, max_attempts=claim.queue.max_attempts, task_name=claim.task_id)
            try:
                outcome = run_task(claim.payload, delivery)
            except Exception as exc:  # run_task answers every ingestion error; this is e.g. an unknown source
                log.exception("task %s could not run", claim.task_id)
                outcome = TaskOutcome(retry=not delivery.final, body={"error": str(exc)})
            for _ in range(3):  # settle the row; a locked file is retried before the lease decides
                try:
                    if outcome.retry:
                        self.queue.retry(claim, outcome.retry_after)
                    else:
                        self.queue.done(claim)
                    break
                except TransientError as exc:
                    log.warning("could not settle task %s: %s", claim.task_id, exc)
            self.finished += 1
            return outcome
        finally:
            with self._running_lock:
                self.running.discard(claim.task_id)

    def tick(self, book: ScheduleBook, now: datetime | None = None) -> list[str]:
        """Fire every source whose cron came due since its last firing; returns the sources fired."""
        now = now or datetime.now(UTC)
        fired = []
        for source in all_sources():
            last = book.last(source.name)
            if last is None:  # first sight: start counting from now, nothing is owed from before
                book.claim(source.name, now)
                continue
            fire = latest_firing(source.schedule.cron, source.schedule.time_zone, last, now)
            if fire is None or not book.claim(source.name, fire):
                continue
            assert self.submit is not None
            try:
                self.submit(source.name)
                fired.append(source.name)
                log.info("schedule: fired %s (%s)", source.name, fire.isoformat())
            except Exception:  # one source's refusal must not stop the others
                log.exception("schedule: %s could not be submitted", source.name)
        return fired
