"""Schedules as code: the Cloud Scheduler jobs the sources ask for (:mod:`scheduler.desired`), and their sync
with the live ones.

Each source with a schedule gets one job, ``projects/{project}/locations/{region}/jobs/tributary-{source}``,
that POSTs ``{"source": name, "params": {}}`` to ``{api_url}/v1/jobs`` with an OIDC token. A TOML file can
override a source's cron, time zone or paused state per deployment (:func:`load_overrides`)::

    [gdelt]
    cron = "*/15 * * * *"

    [comtrade]
    paused = true

:func:`plan` compares only the fields this module owns, and only jobs whose id starts with
``tributary-`` are ours: a sync never touches, and never deletes, any other job in the location.
The desired paused state travels in ``Job.state`` (an output-only field for the API, which
:func:`apply` turns into PauseJob and ResumeJob calls).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from google.cloud import scheduler_v1
from google.protobuf import field_mask_pb2

from common.gcp import clients
from common.settings import settings
from common.sources import all_sources
from scheduler.desired import (
    JOB_PREFIX,
    Job,
    desired_jobs,
    job_id,
    load_overrides,
    location,
)

#: Cloud Scheduler's defaults, for comparing with live jobs that omit them.
_DEFAULT_DEADLINE = 180.0
_UTC_NAMES = {"", "utc", "etc/utc", "etc/uct", "uct", "zulu", "etc/zulu", "gmt", "etc/gmt", "universal"}

# --------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class JobUpdate:
    """A live job to bring to its desired form: ``paths`` for UpdateJob, then a pause or resume."""

    desired: scheduler_v1.Job
    live: scheduler_v1.Job
    paths: tuple[str, ...] = ()
    pause: bool = False
    resume: bool = False

    @property
    def name(self) -> str:
        return self.desired.name


@dataclass
class Plan:
    create: list[scheduler_v1.Job] = field(default_factory=list)
    update: list[JobUpdate] = field(default_factory=list)
    delete: list[scheduler_v1.Job] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def is_ours(job: scheduler_v1.Job) -> bool:
    return job.name.rsplit("/", 1)[-1].startswith(JOB_PREFIX)


def _zone(name: str) -> str:
    return "UTC" if name.strip().lower() in _UTC_NAMES else name.strip()


def _seconds(value: timedelta | None) -> float:
    return value.total_seconds() if value is not None else 0.0


def _target_view(job: scheduler_v1.Job) -> dict[str, Any] | None:
    """The parts of the HTTP target we own, without the headers Cloud Scheduler adds itself."""
    if "http_target" not in job:
        return None
    target = job.http_target
    method = target.http_method or scheduler_v1.HttpMethod.POST
    headers = {k.lower(): v for k, v in target.headers.items() if k.lower() != "user-agent"}
    if target.body and headers.get("content-type") == "application/octet-stream":
        headers.pop("content-type")  # the default Cloud Scheduler stores for a body without a type
    auth: tuple[str, ...] = ()
    if "oidc_token" in target:
        auth = ("oidc", target.oidc_token.service_account_email, target.oidc_token.audience or target.uri)
    elif "oauth_token" in target:
        auth = ("oauth", target.oauth_token.service_account_email, target.oauth_token.scope)
    return {
        "uri": target.uri,
        "method": int(method),
        "headers": headers,
        "body": bytes(target.body),
        "auth": auth,
    }


def _retry_view(job: scheduler_v1.Job) -> tuple[float, ...]:
    retry = job.retry_config
    present = "retry_config" in job
    return (
        float(retry.retry_count),
        _seconds(retry.min_backoff_duration) if "min_backoff_duration" in retry else 5.0,
        _seconds(retry.max_backoff_duration) if "max_backoff_duration" in retry else 3600.0,
        float(retry.max_doublings if present else 5),
        _seconds(retry.max_retry_duration) if "max_retry_duration" in retry else 0.0,
    )


def changed_fields(desired: scheduler_v1.Job, live: scheduler_v1.Job) -> tuple[str, ...]:
    """The update-mask paths where ``live`` differs from ``desired`` (state excluded)."""
    paths = []
    if desired.description != live.description:
        paths.append("description")
    if " ".join(desired.schedule.split()) != " ".join(live.schedule.split()):
        paths.append("schedule")
    if _zone(desired.time_zone) != _zone(live.time_zone):
        paths.append("time_zone")
    if _target_view(desired) != _target_view(live):
        paths.append("http_target")
    if _retry_view(desired) != _retry_view(live):
        paths.append("retry_config")
    live_deadline = _seconds(live.attempt_deadline) if "attempt_deadline" in live else _DEFAULT_DEADLINE
    if _seconds(desired.attempt_deadline) != live_deadline:
        paths.append("attempt_deadline")
    return tuple(paths)


def plan(desired: Iterable[scheduler_v1.Job], live: Iterable[scheduler_v1.Job]) -> Plan:
    """What to create, update and delete so that the live ``tributary-*`` jobs match ``desired``."""
    wanted = {job.name: job for job in desired}
    for name in wanted:
        if not name.rsplit("/", 1)[-1].startswith(JOB_PREFIX):
            raise ValueError(f"desired job {name!r} does not start with {JOB_PREFIX!r}")
    ours = {job.name: job for job in live if is_ours(job)}
    result = Plan()
    for name in sorted(wanted):
        want = wanted[name]
        have = ours.get(name)
        if have is None:
            result.create.append(want)
            continue
        paths = changed_fields(want, have)
        want_paused = want.state == Job.State.PAUSED
        pause = want_paused and have.state == Job.State.ENABLED
        resume = not want_paused and have.state == Job.State.PAUSED
        if paths or pause or resume:
            result.update.append(JobUpdate(want, have, paths, pause, resume))
        else:
            result.unchanged.append(name)
    result.delete = [ours[name] for name in sorted(set(ours) - set(wanted))]
    return result


# -------------------------------------------------------------------------------------------- apply


@dataclass
class ApplyResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # stale jobs left in place without --prune
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.paused or self.resumed or self.deleted)


def _for_api(job: scheduler_v1.Job) -> scheduler_v1.Job:
    """A copy without the output-only ``state`` we use to carry the desired paused state."""
    out = Job.wrap(type(Job.pb(job))())
    Job.pb(out).CopyFrom(Job.pb(job))
    out.state = Job.State.STATE_UNSPECIFIED
    return out


def apply(plan: Plan, client: Any, *, prune: bool = False, dry_run: bool = False) -> ApplyResult:
    """Carry out ``plan`` with a ``CloudSchedulerClient``: creates, masked updates, pauses and resumes,
    and deletes only with ``prune``. With ``dry_run`` nothing is called and the result says what would be.
    """
    result = ApplyResult(dry_run=dry_run)
    for job in plan.create:
        if not dry_run:
            client.create_job(parent=job.name.rsplit("/jobs/", 1)[0], job=_for_api(job))
        result.created.append(job.name)
        if job.state == Job.State.PAUSED:
            if not dry_run:
                client.pause_job(name=job.name)
            result.paused.append(job.name)
    for change in plan.update:
        if change.paths:
            if not dry_run:
                mask = field_mask_pb2.FieldMask(paths=list(change.paths))
                client.update_job(job=_for_api(change.desired), update_mask=mask)
            result.updated.append(change.name)
        if change.pause:
            if not dry_run:
                client.pause_job(name=change.name)
            result.paused.append(change.name)
        if change.resume:
            if not dry_run:
                client.resume_job(name=change.name)
            result.resumed.append(change.name)
    for job in plan.delete:
        if not prune:
            result.kept.append(job.name)
            continue
        if not dry_run:
            client.delete_job(name=job.name)
        result.deleted.append(job.name)
    return result


def live_jobs(client: Any, project: str, region: str) -> list[scheduler_v1.Job]:
    """Every job in the location (all pages)."""
    return list(client.list_jobs(parent=location(project, region)))


def sync(
    client: Any,
    sources: Iterable[Any],
    *,
    project: str,
    region: str,
    api_url: str,
    service_account: str,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    prune: bool = False,
    dry_run: bool = False,
    reaper: bool = False,
) -> tuple[Plan, ApplyResult]:
    """Plan and apply in one call."""
    desired = desired_jobs(
        sources,
        project=project,
        region=region,
        api_url=api_url,
        service_account=service_account,
        overrides=overrides,
        reaper=reaper,
    )
    the_plan = plan(desired, live_jobs(client, project, region))
    return the_plan, apply(the_plan, client, prune=prune, dry_run=dry_run)


DEFAULT_API_URL = "http://127.0.0.1:8080"


def sync_schedules(
    *,
    api_url: str | None = None,
    prune: bool = False,
    dry_run: bool = False,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    overrides_path: str | Path | None = None,
    client: Any = None,
    sources: Iterable[Any] | None = None,
) -> tuple[Plan, ApplyResult]:
    """Sync the registered sources with the configured Cloud Scheduler (what ``tributary schedule sync`` does).

    Defaults: the client from :func:`common.gcp.clients.scheduler` (the emulator when
    ``CLOUD_SCHEDULER_EMULATOR_HOST`` is set), project, region and invoker service account from
    :func:`common.settings.settings`, the sources from ``common.sources.all_sources()``, the API URL from
    ``TRIBUTARY_API_URL`` (else http://127.0.0.1:8080) and the overrides file from
    ``TRIBUTARY_SCHEDULE_OVERRIDES`` when set.
    """
    if client is None:
        client = clients.scheduler()
    if sources is None:
        sources = all_sources()
    if api_url is None:
        api_url = settings().api_url or DEFAULT_API_URL
    if overrides is None:
        path = overrides_path or settings().schedule_overrides
        overrides = load_overrides(path) if path else None
    s = settings()
    return sync(
        client,
        sources,
        project=s.project,
        region=s.region,
        api_url=api_url,
        service_account=s.invoker_service_account,
        overrides=overrides,
        prune=prune,
        dry_run=dry_run,
        reaper=True,
    )


__all__ = [
    "JOB_PREFIX",
    "ApplyResult",
    "JobUpdate",
    "Plan",
    "apply",
    "changed_fields",
    "desired_jobs",
    "is_ours",
    "job_id",
    "live_jobs",
    "load_overrides",
    "plan",
    "sync",
    "sync_schedules",
]
