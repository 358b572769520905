"""The Cloud Scheduler engine's firing: one attempt sent and recorded, its status kept, its retry scheduled."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections import deque
from datetime import datetime, timedelta

from google.cloud import scheduler_v1
from google.rpc import status_pb2

from common.local.emulators.kit.backoff import backoff
from common.local.emulators.kit.clock import Clock
from common.local.emulators.kit.dispatch import Dispatcher, Oidc
from common.local.emulators.kit.rpc import Code, http_to_code
from common.local.emulators.kit.timeconv import seconds as _seconds
from common.local.emulators.kit.timeconv import timestamp as _ts
from common.local.emulators.scheduler.cron import next_fire_time, rfc3339
from common.local.emulators.scheduler.jobs import (
    DEFAULT_ATTEMPT_DEADLINE,
    MAX_ATTEMPTS_PER_EXECUTION,
    STRIPPED_HEADER_PREFIXES,
    STRIPPED_HEADERS,
    USER_AGENT,
    Event,
    FireRecord,
    JobState,
    PendingRetry,
    job_id,
)

log = logging.getLogger("tributary.emulators.scheduler")
PUBLISH_DEADLINE = 30.0  # seconds for one publish to the Pub/Sub emulator


class Firing:
    """Firing for :class:`~common.local.emulators.scheduler.engine.SchedulerEngine`: :meth:`_execute` sends one
    attempt of a claimed :class:`Event` (never raises), records it, updates the job's status and schedules the
    retry its RetryConfig allows."""

    dispatcher: Dispatcher
    _clock: Clock
    _fire: bool
    _pubsub_host: str | None
    _lock: threading.RLock
    _cond: threading.Condition
    _jobs: dict[str, JobState]
    _history: deque[FireRecord]
    _stopping: threading.Event
    _ticker: threading.Thread | None
    _warned: set[str]

    def _execute(self, event: Event) -> FireRecord:
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
        elif target == "pubsub_target" and self._pubsub_host:
            status, error = self._publish(event)
            record = FireRecord(
                event.name, event.schedule_time, status, event.attempt, event.kind, started, error, True, target
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

    def _send_abortable(self, event: Event) -> tuple[int | None, str | None]:
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
        threading.Thread(target=work, name=f"scheduler-http-{job_id(event.name)}", daemon=True).start()
        while not done.wait(timeout=0.25):
            if self._stopping.is_set():
                return None, "CANCELLED: the emulator stopped during the attempt"
        if result[0][0] is None and self._stopping.is_set():  # the stop closed the connection under the request
            return None, "CANCELLED: the emulator stopped during the attempt"
        return result[0]

    def _send(self, event: Event) -> tuple[int | None, str | None]:
        job = event.job
        target = job.http_target
        method = scheduler_v1.HttpMethod(target.http_method).name
        if method == "HTTP_METHOD_UNSPECIFIED":
            method = "POST"
        headers = {
            key: value
            for key, value in target.headers.items()
            if key.lower() not in STRIPPED_HEADERS and not key.lower().startswith(STRIPPED_HEADER_PREFIXES)
        }
        if target.body and not any(key.lower() == "content-type" for key in headers):
            headers["Content-Type"] = "application/octet-stream"
        headers["User-Agent"] = USER_AGENT
        headers["X-CloudScheduler"] = "true"
        headers["X-CloudScheduler-JobName"] = job_id(job.name)
        headers["X-CloudScheduler-ScheduleTime"] = rfc3339(event.schedule_time, job.time_zone)
        auth = target.WhichOneof("authorization_header")
        oidc = None
        if auth == "oidc_token":
            oidc = Oidc(target.oidc_token.audience or target.uri, target.oidc_token.service_account_email)
        elif auth == "oauth_token":
            self._warn_once(f"{job.name}:oauth", "%s: oauth_token is not emulated; no Authorization sent", job.name)
        deadline = (
            _seconds(job.attempt_deadline)
            if job.HasField("attempt_deadline")
            else DEFAULT_ATTEMPT_DEADLINE.total_seconds()
        )
        answer = self.dispatcher.send(method, target.uri, headers, target.body, deadline, oidc)
        if answer.status is not None:
            return answer.status, None
        if answer.code == Code.DEADLINE_EXCEEDED:
            return None, f"DEADLINE_EXCEEDED: no answer within {deadline:g} s ({answer.detail})"
        return None, f"UNAVAILABLE: {answer.detail}"

    def _publish(self, event: Event) -> tuple[int | None, str | None]:
        """Publish the job's message to its topic on the Pub/Sub emulator (its REST API), as Cloud Scheduler
        publishes ``data`` and ``attributes`` of a Pub/Sub target."""
        target = event.job.pubsub_target
        message: dict[str, object] = {"data": base64.b64encode(target.data).decode()}
        if target.attributes:
            message["attributes"] = dict(target.attributes)
        url = f"http://{self._pubsub_host}/v1/{target.topic_name}:publish"
        body = json.dumps({"messages": [message]}).encode()
        answer = self.dispatcher.send("POST", url, {"Content-Type": "application/json"}, body, PUBLISH_DEADLINE, None)
        if answer.status is not None:
            return answer.status, None if answer.ok else f"{answer.code.name}: publish answered {answer.status}"
        return None, f"{answer.code.name}: {answer.detail}"

    def _complete(self, event: Event, record: FireRecord, first_attempt: datetime) -> None:
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
                    code = http_to_code(record.status)
                    message = "" if record.ok else f"Original HTTP response code number = {record.status}"
                else:
                    error = record.error or "UNAVAILABLE"
                    code = (
                        Code.DEADLINE_EXCEEDED
                        if error.startswith("DEADLINE")
                        else Code.CANCELLED
                        if error.startswith("CANCELLED")
                        else Code.UNAVAILABLE
                    )
                    message = error
                state.job.status.CopyFrom(status_pb2.Status(code=code, message=message))
                if not record.ok:
                    self._schedule_retry(state, event, first_attempt)
            self._refresh_output(state)
            self._cond.notify_all()

    def _schedule_retry(self, state: JobState, event: Event, first_attempt: datetime) -> None:
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
        state.retry = PendingRetry(at, event.attempt + 1, first_attempt, event.schedule_time)

    def _refresh_output(self, state: JobState) -> None:
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
