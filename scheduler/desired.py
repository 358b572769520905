"""The Cloud Scheduler jobs the sources ask for (one per scheduled source, plus the reaper), with a deployment's
overrides applied; :mod:`scheduler.sync` compares them with the live ones."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from croniter import croniter
from google.cloud import scheduler_v1

from common.gcp import names

#: Only jobs whose id starts with this prefix belong to Tributary.
JOB_PREFIX = names.PREFIX
#: The fields an update may touch (the update mask paths we own).
OWNED_FIELDS = ("description", "schedule", "time_zone", "http_target", "retry_config", "attempt_deadline")
OVERRIDE_KEYS = {"cron": str, "time_zone": str, "paused": bool}

RETRY_COUNT = 3
MIN_BACKOFF = timedelta(seconds=10)
MAX_BACKOFF = timedelta(seconds=300)
MAX_DOUBLINGS = 3
ATTEMPT_DEADLINE = timedelta(seconds=60)
REAPER_CRON = "*/10 * * * *"
_SOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")

Job = scheduler_v1.Job


# ------------------------------------------------------------------------------------------ desired


def job_id(source: str) -> str:
    """The job id of a source: ``tributary-{source}``."""
    if not _SOURCE_NAME_RE.match(source):
        raise ValueError(f"source name {source!r} cannot be a job id (letters, digits, '-' and '_' only)")
    return f"{JOB_PREFIX}{source}"


def location(project: str, region: str) -> str:
    """``projects/P/locations/R``."""
    return names.location_path(project=project, region=region)


def _check_overrides(overrides: Mapping[str, Any]) -> None:
    for source, values in overrides.items():
        if not isinstance(values, Mapping):
            raise ValueError(f"override for {source!r} must be a table of cron, time_zone, paused")
        for key, value in values.items():
            expected = OVERRIDE_KEYS.get(key)
            if expected is None:
                raise ValueError(f"override for {source!r}: unknown key {key!r} (allowed: cron, time_zone, paused)")
            if not isinstance(value, expected):
                raise ValueError(f"override for {source!r}: {key} must be a {expected.__name__}")


def _check_cron(source: str, cron: str) -> None:
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise ValueError(f"source {source!r}: schedule {cron!r} is not a 5-field unix-cron expression")


def desired_jobs(
    sources: Iterable[Any],
    *,
    project: str,
    region: str,
    api_url: str,
    service_account: str,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    reaper: bool = False,
) -> list[scheduler_v1.Job]:
    """One job per source that has a schedule (``.name``, ``.schedule.cron``, ``.schedule.time_zone``).

    With ``reaper``, also the maintenance job ``tributary-reaper`` that calls ``POST /v1/reaper:run``
    every ``REAPER_CRON`` (it fails or re-enqueues stuck jobs, see ``common/runtime/reaper.py``).

    ``overrides`` (``{source: {cron, time_zone, paused}}``) wins over the source's own schedule; a source
    without a schedule gets a job only when an override gives it a cron. Jobs come sorted by name.
    """
    overrides = dict(overrides or {})
    _check_overrides(overrides)
    sources = list(sources)
    known = {source.name for source in sources}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"overrides name unknown sources: {', '.join(unknown)}")
    base = api_url.rstrip("/")
    where = {"project": project, "region": region}
    jobs = []
    for source in sources:
        name = source.name
        schedule = getattr(source, "schedule", None)
        override = overrides.get(name, {})
        cron = override.get("cron") or (getattr(schedule, "cron", None) if schedule is not None else None)
        if not cron:
            continue
        _check_cron(name, cron)
        time_zone = override.get("time_zone") or getattr(schedule, "time_zone", None) or "UTC"
        target: dict[str, Any] = {
            "uri": f"{base}/v1/jobs",
            "http_method": scheduler_v1.HttpMethod.POST,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(
                {"source": name, "params": dict(getattr(source, "daily_params", None) or {})}, separators=(",", ":")
            ).encode(),
        }
        if service_account:
            target["oidc_token"] = {"service_account_email": service_account, "audience": base}
        jobs.append(
            Job(
                name=names.scheduler_job_path(job_id(name), **where),
                description=f"Tributary: scheduled ingestion of {name}",
                schedule=" ".join(cron.split()),
                time_zone=time_zone,
                http_target=target,
                retry_config={
                    "retry_count": RETRY_COUNT,
                    "min_backoff_duration": MIN_BACKOFF,
                    "max_backoff_duration": MAX_BACKOFF,
                    "max_doublings": MAX_DOUBLINGS,
                    "max_retry_duration": timedelta(0),
                },
                attempt_deadline=ATTEMPT_DEADLINE,
                state=Job.State.PAUSED if override.get("paused") else Job.State.ENABLED,
            )
        )
    if reaper:
        target = {
            "uri": f"{base}/v1/reaper:run",
            "http_method": scheduler_v1.HttpMethod.POST,
            "headers": {"Content-Type": "application/json"},
            "body": b"{}",
        }
        if service_account:
            target["oidc_token"] = {"service_account_email": service_account, "audience": base}
        jobs.append(
            Job(
                name=names.scheduler_job_path(names.REAPER_JOB, **where),
                description="Tributary: fail or re-enqueue jobs that stopped making progress",
                schedule=REAPER_CRON,
                time_zone="UTC",
                http_target=target,
                retry_config={
                    "retry_count": 1,
                    "min_backoff_duration": MIN_BACKOFF,
                    "max_backoff_duration": MAX_BACKOFF,
                    "max_doublings": MAX_DOUBLINGS,
                    "max_retry_duration": timedelta(0),
                },
                attempt_deadline=ATTEMPT_DEADLINE,
                state=Job.State.ENABLED,
            )
        )
    return sorted(jobs, key=lambda job: job.name)


def load_overrides(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read ``{source: {cron, time_zone, paused}}`` from TOML (or YAML when PyYAML is installed).

    The tables may sit at the top level or under ``[sources]``.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in {".yaml", ".yml"}:
        try:
            import yaml
        except ImportError as exc:
            raise RuntimeError(f"{path}: PyYAML is not installed; write the overrides in TOML") from exc
        data = yaml.safe_load(text) or {}
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a table of sources")
    if set(data) == {"sources"} and isinstance(data["sources"], dict):
        data = data["sources"]
    try:
        _check_overrides(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return {str(source): dict(values) for source, values in data.items()}
