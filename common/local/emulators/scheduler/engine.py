"""The Cloud Scheduler engine: jobs in memory, the rules of each call, cron firing and time control; no transport.

Calls take and return the ``google.cloud.scheduler_v1`` proto-plus messages; a refusal raises
:class:`~common.local.emulators.kit.rpc.RpcError` with its canonical code, which a server maps to its
transport's status. Time comes from an injectable :class:`~common.local.emulators.kit.clock.Clock`.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from google.cloud import scheduler_v1
from google.protobuf import empty_pb2, field_mask_pb2

from common.local.emulators.kit.clock import Clock, make_clock
from common.local.emulators.kit.dispatch import Dispatcher
from common.local.emulators.kit.masks import merge_masked
from common.local.emulators.kit.rpc import Code, RpcError
from common.local.emulators.kit.rpc import invalid as _invalid
from common.local.emulators.kit.timeconv import timestamp as _ts
from common.local.emulators.oidc import LocalSigner, default_signer
from common.local.emulators.scheduler.cron import next_fire_time
from common.local.emulators.scheduler.firing import Firing
from common.local.emulators.scheduler.jobs import (
    HISTORY_SIZE,
    MAX_EVENTS_PER_ADVANCE,
    MAX_PAGE_SIZE,
    OUTPUT_ONLY,
    UPDATABLE,
    Event,
    FireRecord,
    Job,
    JobPb,
    JobState,
    check_name,
    check_parent,
    copy_job,
    job_id,
    normalize,
)


class SchedulerEngine(Firing):
    """Cloud Scheduler in memory: job store, cron firing and time control.

    ``clock``: ``None`` for real time (a background thread fires jobs when due), a
    :class:`~common.local.emulators.kit.clock.FrozenClock` or an aware ``datetime`` (frozen there) for
    tests, or any ``Clock``. ``fire=False`` stores and schedules jobs but never sends a request.
    ``pubsub_emulator_host`` (``host:port`` of Google's Pub/Sub emulator) makes Pub/Sub targets publish there;
    without it they are stored and never fired.
    """

    def __init__(
        self,
        *,
        signer: LocalSigner | None = None,
        clock: Clock | datetime | None = None,
        fire: bool = True,
        pubsub_emulator_host: str | None = None,
    ) -> None:
        self._signer = signer
        self._pubsub_host = pubsub_emulator_host
        self._clock = make_clock(clock)
        self._fire = fire
        self.dispatcher = Dispatcher(lambda: self.signer)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._jobs: dict[str, JobState] = {}
        self._uid = 0
        self._history: deque[FireRecord] = deque(maxlen=HISTORY_SIZE)
        self._advancing = 0
        self._advance_lock = threading.Lock()
        self._stopping = threading.Event()
        self._ticker: threading.Thread | None = None
        self._dispatchers: set[threading.Thread] = set()
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start firing: a ticker thread fires due jobs unless the clock is frozen."""
        self._stopping.clear()
        self.dispatcher.open()
        if not self._clock.frozen:
            self._ticker = threading.Thread(target=self._tick_loop, name="scheduler-ticker", daemon=True)
            self._ticker.start()

    def stop(self, deadline: float) -> None:
        """Stop firing; joins the threads until the monotonic ``deadline``."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._ticker is not None:
            self._ticker.join(timeout=max(0.1, deadline - time.monotonic()))
            self._ticker = None
        self.dispatcher.close()  # aborts the requests still in flight, so their threads end quickly
        with self._lock:
            dispatchers = list(self._dispatchers)
        for thread in dispatchers:
            thread.join(timeout=max(0.05, deadline - time.monotonic()))

    def job_count(self) -> int:
        with self._lock:
            return len(self._jobs)

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

    def _claim_next(self, until: datetime) -> Event | None:
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

    def _claim(self, state: JobState, kind: str, *, coalesce: bool) -> Event:
        """Take the due execution of ``state`` (lock held) and move its schedule on."""
        state.in_flight = True
        name = state.job.name
        if kind == "retry" and state.retry is not None:
            retry = state.retry
            state.retry = None
            return Event(
                name, state.uid, copy_job(state.job), "retry", retry.schedule_time, retry.attempt, retry.first_attempt
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
        return Event(name, state.uid, copy_job(state.job), "schedule", scheduled)

    def _tick_loop(self) -> None:
        while not self._stopping.is_set():
            events: list[Event] = []
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

    def _spawn(self, event: Event) -> None:
        def run() -> None:
            try:
                self._execute(event)
            finally:
                with self._lock:
                    self._dispatchers.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"scheduler-fire-{job_id(event.name)}", daemon=True)
        with self._lock:
            self._dispatchers.add(thread)
        thread.start()

    def _get(self, name: str) -> JobState:
        check_name(name)
        state = self._jobs.get(name)
        if state is None:
            raise RpcError(Code.NOT_FOUND, f"Job not found: {name}")
        return state

    @staticmethod
    def _out(state: JobState) -> Any:
        return Job.wrap(copy_job(state.job))

    # ------------------------------------------------------------------ RPCs

    def list_jobs(self, request: scheduler_v1.ListJobsRequest) -> scheduler_v1.ListJobsResponse:
        check_parent(request.parent)
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
        check_parent(request.parent)
        job = copy_job(scheduler_v1.Job.pb(request.job))
        if not job.name:
            job.name = f"{request.parent}/jobs/{secrets.token_hex(10)}"
        check_name(job.name)
        if job.name.rsplit("/jobs/", 1)[0] != request.parent:
            raise _invalid(f"Job name {job.name!r} is not under parent {request.parent!r}")
        for output_only in OUTPUT_ONLY:
            job.ClearField(output_only)
        normalize(job, self._clock.now())
        with self._cond:
            if job.name in self._jobs:
                raise RpcError(Code.ALREADY_EXISTS, f"Job {job.name} already exists")
            now = self._clock.now()
            job.state = Job.State.ENABLED
            job.user_update_time.CopyFrom(_ts(now))
            self._uid += 1
            state = JobState(job, self._uid, next_fire_time(job.schedule, job.time_zone, now))
            self._jobs[job.name] = state
            self._refresh_output(state)
            self._cond.notify_all()
            return self._out(state)

    def update_job(self, request: scheduler_v1.UpdateJobRequest) -> Any:
        incoming = scheduler_v1.Job.pb(request.job)
        if not incoming.name:
            raise _invalid("job.name is required")
        check_name(incoming.name)
        mask_pb = scheduler_v1.UpdateJobRequest.pb(request).update_mask
        paths = list(mask_pb.paths)
        if paths:
            for path in paths:
                top = path.split(".", 1)[0]
                valid = field_mask_pb2.FieldMask(paths=[path]).IsValidForDescriptor(JobPb.DESCRIPTOR)
                if not valid or top == "name":
                    raise _invalid(f"Invalid mask for Job: {path}")
            paths = [p for p in paths if p.split(".", 1)[0] not in OUTPUT_ONLY]
        else:  # AIP-134: no mask means every populated field
            paths = [fd.name for fd, _ in incoming.ListFields() if fd.name in UPDATABLE]
        with self._cond:
            state = self._get(incoming.name)
            job = copy_job(state.job)
            if paths:
                merge_masked(paths, incoming, job)
            normalize(job, self._clock.now())
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

    def _get_in(self, name: str, required: Any, rule: str) -> JobState:
        """The job ``name``, which must be in state ``required`` (FAILED_PRECONDITION otherwise, as Google)."""
        state = self._get(name)
        if state.job.state != required:
            raise RpcError(Code.FAILED_PRECONDITION, f"Job {name} is {Job.State(state.job.state).name}; {rule}")
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
            event = Event(request.name, state.uid, copy_job(state.job), "run", now, 1, now)
        self._execute(event)
        with self._cond:
            after = self._jobs.get(request.name)
            if after is None:
                raise RpcError(Code.NOT_FOUND, f"Job not found: {request.name}")
            return self._out(after)
