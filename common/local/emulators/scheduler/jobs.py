"""Cloud Scheduler jobs: defaults and limits, the state kept per job, fire records, and the checks on a job."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.cloud import scheduler_v1

from common.local.emulators.kit.rpc import invalid as _invalid
from common.local.emulators.kit.timeconv import duration as _dur
from common.local.emulators.kit.timeconv import seconds as _seconds
from common.local.emulators.scheduler.cron import ScheduleError, next_fire_time, rfc3339, validate_schedule, zone

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
HISTORY_SIZE = 10_000
STOP_BUDGET_SECONDS = 5.0

_PROJECT_RE = r"[A-Za-z0-9\-:.]+"
_LOCATION_RE = r"[A-Za-z0-9\-]+"
_JOB_ID_RE = r"[A-Za-z0-9_\-]{1,500}"
PARENT_RE = re.compile(rf"^projects/({_PROJECT_RE})/locations/({_LOCATION_RE})$")
JOB_NAME_RE = re.compile(rf"^projects/({_PROJECT_RE})/locations/({_LOCATION_RE})/jobs/({_JOB_ID_RE})$")
_TOPIC_RE = re.compile(r"^projects/[^/]+/topics/[^/]+$")

OUTPUT_ONLY = ("user_update_time", "state", "status", "schedule_time", "last_attempt_time")
UPDATABLE = (
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
STRIPPED_HEADER_PREFIXES = ("x-google-", "x-appengine-", "x-cloudscheduler")
STRIPPED_HEADERS = {"host", "content-length", "user-agent", "authorization"}

Job = scheduler_v1.Job
JobPb = type(Job.pb(Job()))


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
class PendingRetry:
    at: datetime
    attempt: int
    first_attempt: datetime
    schedule_time: datetime


@dataclass
class JobState:
    job: Any  # the raw protobuf Job
    uid: int
    next_time: datetime | None = None
    retry: PendingRetry | None = None
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
class Event:
    name: str
    uid: int
    job: Any  # snapshot of the raw protobuf Job
    kind: str
    schedule_time: datetime
    attempt: int = 1
    first_attempt: datetime | None = None


def copy_job(job: Any) -> Any:
    out = JobPb()
    out.CopyFrom(job)
    return out


def job_id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def normalize(job: Any, now: datetime) -> None:
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
        next_fire_time(job.schedule, job.time_zone, now)
    except ScheduleError as exc:
        raise _invalid(f"Schedule or time zone is invalid. ({exc})") from exc
    kind = job.WhichOneof("target")
    if kind is None:
        raise _invalid("Job must have a target: http_target, pubsub_target or app_engine_http_target")
    if kind == "http_target":
        _normalize_http(job.http_target)
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
    _normalize_retry(job)


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


def check_name(name: str) -> None:
    if not JOB_NAME_RE.match(name):
        raise _invalid(
            f"Invalid job name {name!r}: expected projects/PROJECT_ID/locations/LOCATION_ID/jobs/JOB_ID "
            "(JOB_ID: letters, digits, hyphens or underscores, at most 500)"
        )


def check_parent(parent: str) -> None:
    if not PARENT_RE.match(parent):
        raise _invalid(f"Invalid parent {parent!r}: expected projects/PROJECT_ID/locations/LOCATION_ID")
