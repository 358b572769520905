"""What ``deploy.sh`` deploys, computed from the source registry and the settings (no fact is repeated in bash).

``deploy.sh`` owns the gcloud commands and the IAM roles; this module owns the names, sizes, limits,
URLs and environment that go into them, so a source's queue limits, memory, timeout and secrets come
from its class in ``common/sources/`` and nowhere else::

    python -m common.ops.deploy_plan --format shell --project P --region R [--project-number N] [--sources a,b]
    python -m common.ops.deploy_plan --format json  --project P --region R      # the same plan, for people
    python -m common.ops.deploy_plan --stage ingest --dest DIR                  # a deployable tree for one function

The shell format is one record per line, fields separated by tabs, ``-`` for an empty field::

    const     KEY       VALUE
    queue     SOURCE    QUEUE  RATE  CONCURRENT  ATTEMPTS  MIN_BACKOFF  MAX_BACKOFF  DOUBLINGS
    function  KIND      NAME   ENTRY_POINT  MEMORY  TIMEOUT  MAX_INSTANCES  SOURCE  ENV  SECRETS
    secret    OWNER     NAME   ENV_VAR  ACCOUNT            (OWNER: a source, or "api" for the API keys)
    index     COLLECTION  FIELDS                (FIELDS: field:ascending|descending,...)
    ttl       COLLECTION_GROUP  FIELD           (a TTL policy: documents are deleted after FIELD's time)
    unindexed COLLECTION_GROUP  FIELD           (a field no query reads: no single-field index on it)
    schedule  SOURCE    CRON   TIME_ZONE

Only secret *names* ever appear: values stay in Secret Manager, and the functions receive them as
``TRIBUTARY_SECRET_<NAME>`` environment variables that Cloud Run resolves at start-up.

Exit status 2 means the input was wrong (an unknown source, a name Google would refuse).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.gcp import names
from common.gcp.firestore.codec import EXPIRE_AT, TTL_COLLECTION_GROUPS
from common.gcp.firestore.indexes import INDEXES, JOB_FILTERS
from common.gcp.firestore.markers import UNINDEXED
from common.gcp.pubsub import ACK_DEADLINE, MAX_DELIVERY_ATTEMPTS, MESSAGE_ORDERING
from common.gcp.secrets import env_name
from common.ops.plan_model import (
    API_SIZE,
    STATUS_SIZE,
    FunctionPlan,
    FunctionSize,
    Plan,
    PlanError,
    QueuePlan,
    SecretRef,
)
from common.ops.staging import (
    ENTRY_POINTS,
    MAIN_PY,
    PACKAGES,
    REPO,
    STAGE_IGNORE,
    STAGED_MODULES,
    celery_warnings,
    requirements,
    stage,
)
from common.ops.warehouse_plan import load_plan
from common.settings import Settings, settings
from common.sources import all_sources

__all__ = [
    "ACK_DEADLINE",
    "API_SIZE",
    "ENTRY_POINTS",
    "MAIN_PY",
    "MAX_DELIVERY_ATTEMPTS",
    "MESSAGE_ORDERING",
    "PACKAGES",
    "REPO",
    "STAGE_IGNORE",
    "STATUS_SIZE",
    "SUBSCRIPTION",
    "FunctionPlan",
    "FunctionSize",
    "Plan",
    "PlanError",
    "QueuePlan",
    "SecretRef",
    "build_plan",
    "main",
    "requirements",
    "stage",
]

RUNTIME = "python311"
PREFIX = names.PREFIX
#: Placeholder for the project number when it is not known (``deploy.sh --dry-run``).
NUMBER_PLACEHOLDER = "PROJECT_NUMBER"

SUBSCRIPTION = names.STATUS_SUBSCRIPTION

#: The fields ``common.gcp.firestore.list_jobs`` filters on; every combination has its composite index
#: (``common.gcp.firestore.indexes.INDEXES``: real Firestore refused source + status without one).
INDEXED_FIELDS = JOB_FILTERS

# Cloud's naming rules, checked here so a bad name fails before anything is created.
_SOURCE_NAME = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
_QUEUE_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_SECRET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_TOKEN = re.compile(r"^[A-Za-z0-9.:_-]+$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+$")
#: A run.app host label (service name, '-', project number) has at most 63 characters.
_DNS_LABEL = 63


# ------------------------------------------------------------------------------------------ helpers


def seconds(value: float) -> str:
    """A gcloud duration: ``30s``, ``0.5s``."""
    return f"{value:g}s"


def rate(value: float) -> str:
    return f"{value:g}"


service_account = names.service_account
function_name = names.function_name


def run_url(service: str, project_number: str, region: str) -> str:
    """The deterministic Cloud Run URL, known before the service exists.

    Google documents it as ``https://SERVICE_NAME-PROJECT_NUMBER.REGION.run.app``, available when
    the label (name, '-', number) has at most 63 characters.
    """
    if project_number.isdigit() and len(f"{service}-{project_number}") > _DNS_LABEL:
        raise PlanError(
            f"{service!r} is too long for a deterministic run.app URL "
            f"({len(service) + 1 + len(project_number)} > {_DNS_LABEL} characters); use a shorter source name"
        )
    return f"https://{service}-{project_number}.{region}.run.app"


def _check_token(what: str, value: str) -> str:
    if not _TOKEN.match(value):
        raise PlanError(f"{what} {value!r} has characters gcloud names cannot hold")
    return value


def select_sources(sources: Sequence[Any], wanted: str | None) -> list[Any]:
    """The registered sources, or the comma-separated subset ``wanted`` (in registry order)."""
    if not wanted:
        return list(sources)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    known = {s.name for s in sources}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PlanError(f"unknown source(s): {', '.join(unknown)}; known sources: {', '.join(sorted(known))}")
    if not names:
        raise PlanError("--sources is empty")
    return [s for s in sources if s.name in names]


# --------------------------------------------------------------------------------------------- plan


def build_plan(
    *,
    project: str,
    region: str,
    project_number: str = NUMBER_PLACEHOLDER,
    bucket: str | None = None,
    sources: Sequence[Any] | None = None,
    only: str | None = None,
    api_service_accounts: Sequence[str] = (),
    api_keys_secret: str | None = None,
) -> Plan:
    """The deployment of ``sources`` (default: the registry) to ``project`` in ``region``.

    ``api_service_accounts`` may call the api with their ID tokens (besides the invoker);
    ``api_keys_secret`` names the Secret Manager secret holding ``TRIBUTARY_API_KEYS`` (hashed keys).

    Raises:
        PlanError: an unknown source in ``only``, or a name Google would refuse.
    """
    if sources is None:
        sources = all_sources()
    _check_token("project", project)
    _check_token("region", region)
    if project_number != NUMBER_PLACEHOLDER and not project_number.isdigit():
        raise PlanError(f"project number {project_number!r} is not a number")
    bucket = bucket or f"{project}-tributary"
    _check_token("bucket", bucket)
    s = settings()
    defaults = Settings.model_construct()  # the declared defaults, whatever the environment says

    accounts = {kind: service_account(f"{PREFIX}{kind}", project) for kind in ("api", "ingest", "status", "invoker")}
    ingest_template = run_url(function_name("ingest", "{source}"), project_number, region)
    api_url = run_url(function_name("api"), project_number, region)
    status_url = run_url(function_name("status"), project_number, region)
    output_uri = f"gs://{bucket}"

    env = {
        "TRIBUTARY_PROJECT": project,
        "TRIBUTARY_REGION": region,
        "TRIBUTARY_OUTPUT_URI": output_uri,
        "TRIBUTARY_INGEST_URL": ingest_template,
        "TRIBUTARY_INVOKER_SERVICE_ACCOUNT": accounts["invoker"],
        # common.runtime.auth: verify every request (fail closed), and the api's own URL is its token audience.
        "TRIBUTARY_AUTH": "on",
        "TRIBUTARY_API_URL": api_url,
    }
    # Settings that change resource names travel with the functions when they differ from the defaults.
    if s.queue_prefix != defaults.queue_prefix:
        env["TRIBUTARY_QUEUE_PREFIX"] = s.queue_prefix
    if s.topic != defaults.topic:
        env["TRIBUTARY_TOPIC"] = s.topic
    if s.retention_days != defaults.retention_days:  # the expire_at the functions write (deploy.md)
        env["TRIBUTARY_RETENTION_DAYS"] = str(s.retention_days)
    warnings = celery_warnings(s)
    if extra := s.extra_sources.strip():
        env["TRIBUTARY_EXTRA_SOURCES"] = extra
        for entry in filter(None, (e.strip() for e in extra.split(","))):
            module = entry.split(":", 1)[0]
            if not any(module == m or module.startswith(m + ".") for m in STAGED_MODULES):
                warnings.append(
                    f"TRIBUTARY_EXTRA_SOURCES entry {entry!r} lives outside {', '.join(STAGED_MODULES)}: "
                    "the staged functions will not contain it, so they will fail to import it"
                )

    consts = {
        "project": project,
        "region": region,
        "project_number": project_number,
        "bucket": bucket,
        "output_uri": output_uri,
        "runtime": RUNTIME,
        "sa_api": accounts["api"],
        "sa_ingest": accounts["ingest"],
        "sa_status": accounts["status"],
        "sa_invoker": accounts["invoker"],
        "pubsub_agent": names.pubsub_service_agent(project_number),
        "topic": names.topic_id(s),
        "dead_topic": names.dead_topic_id(s),
        "subscription": SUBSCRIPTION,
        "dead_subscription": names.dead_subscription_id(s),
        "max_delivery_attempts": str(MAX_DELIVERY_ATTEMPTS),
        "ack_deadline": str(ACK_DEADLINE),
        "message_ordering": "true" if MESSAGE_ORDERING else "false",
        "api_function": function_name("api"),
        "status_function": function_name("status"),
        "api_url": api_url,
        "status_url": status_url,
        "push_endpoint": names.push_endpoint(status_url, s.model_copy(update={"project": project})),
        "push_audience": status_url,
        "ingest_url": ingest_template,
    }

    queues, functions, secrets, schedules = [], [], [], []
    registered = list(sources)
    source_names = [src.name for src in registered]
    if len(set(source_names)) != len(source_names):
        dupes = sorted({n for n in source_names if source_names.count(n) > 1})
        raise PlanError(f"source(s) registered twice: {', '.join(dupes)}")
    for src in select_sources(registered, only):
        if not _SOURCE_NAME.match(src.name):
            raise PlanError(
                f"source name {src.name!r} cannot name a Cloud Run service "
                "(lowercase letters, digits and '-', starting with a letter)"
            )
        q = src.queue
        queue_id = names.queue_id(src.name, s)
        if not _QUEUE_ID.match(queue_id):
            raise PlanError(f"queue name {queue_id!r} for source {src.name!r} is not a valid Cloud Tasks queue id")
        if not 15 <= q.dispatch_deadline <= 1800:
            raise PlanError(f"source {src.name!r}: dispatch_deadline {q.dispatch_deadline:g}s is outside 15-1800 s")
        queues.append(
            QueuePlan(
                source=src.name,
                name=queue_id,
                max_dispatches_per_second=rate(q.max_dispatches_per_second),
                max_concurrent_dispatches=q.max_concurrent_dispatches,
                max_attempts=q.max_attempts,
                min_backoff=seconds(q.min_backoff),
                max_backoff=seconds(q.max_backoff),
                max_doublings=q.max_doublings,
            )
        )
        refs = []
        for secret in src.secrets:
            if not _SECRET_NAME.match(secret):
                raise PlanError(f"source {src.name!r}: {secret!r} is not a valid Secret Manager secret id")
            refs.append(SecretRef(source=src.name, name=secret, env=env_name(secret), account=accounts["ingest"]))
        secrets.extend(refs)
        name = function_name("ingest", src.name)
        run_url(name, project_number, region)  # checks the URL can be predicted
        functions.append(
            FunctionPlan(
                kind="ingest",
                name=name,
                entry_point="ingest",
                memory=src.memory,
                # The function may run as long as Cloud Tasks waits for it, no longer.
                timeout=seconds(q.dispatch_deadline),
                # One request per instance (under 1 vCPU); one more instance than the queue's concurrency,
                # so a draining instance never turns a dispatch into a 429 that costs an attempt.
                max_instances=q.max_concurrent_dispatches + 1,
                env={**env, "TRIBUTARY_SOURCE": src.name},
                source=src.name,
                secrets=tuple(refs),
            )
        )
        schedule = getattr(src, "schedule", None)
        if schedule is not None:
            schedules.append((src.name, " ".join(schedule.cron.split()), schedule.time_zone))

    # The push's token audience is the status URL (there is no default for it in common.runtime.auth).
    status_env = {**env, "TRIBUTARY_OIDC_AUDIENCE": status_url}
    api_env = dict(env)
    for email in api_service_accounts:
        if not _EMAIL.match(email):
            raise PlanError(f"{email!r} is not a service account email")
    if api_service_accounts:
        api_env["TRIBUTARY_OIDC_ALLOWED_SERVICE_ACCOUNTS"] = ",".join(api_service_accounts)
    api_secrets: tuple[SecretRef, ...] = ()
    if api_keys_secret:
        if not _SECRET_NAME.match(api_keys_secret):
            raise PlanError(f"{api_keys_secret!r} is not a valid Secret Manager secret id")
        api_secrets = (
            SecretRef(source="api", name=api_keys_secret, env="TRIBUTARY_API_KEYS", account=accounts["api"]),
        )
        secrets.extend(api_secrets)
    for kind, size, fn_env, fn_secrets in (
        ("status", STATUS_SIZE, status_env, ()),
        ("api", API_SIZE, api_env, api_secrets),
    ):
        functions.append(
            FunctionPlan(
                kind=kind,
                name=function_name(kind),
                entry_point=kind,
                memory=size.memory,
                timeout=seconds(size.timeout),
                max_instances=size.max_instances,
                env=fn_env,
                secrets=fn_secrets,
            )
        )
    load = load_plan(project=project, load_url=run_url(function_name("load"), project_number, region), env=env, s=s)
    consts.update(load.consts)  # the load stage (common.ops.warehouse_plan)
    functions.append(load.function)
    indexes = [(index.collection, index.spec()) for index in INDEXES]
    return Plan(
        project=project,
        region=region,
        project_number=project_number,
        bucket=bucket,
        consts=consts,
        queues=queues,
        functions=functions,
        secrets=secrets,
        schedules=schedules,
        indexes=indexes,
        ttls=[(group, EXPIRE_AT) for group in TTL_COLLECTION_GROUPS],
        unindexed=list(UNINDEXED),
        warnings=warnings,
    )


# ---------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.ops.deploy_plan", description=__doc__.split("\n")[0])
    parser.add_argument("--format", choices=("shell", "json"), default="shell")
    parser.add_argument("--project")
    parser.add_argument("--region")
    parser.add_argument("--project-number", default=NUMBER_PLACEHOLDER)
    parser.add_argument("--bucket")
    parser.add_argument("--sources", help="comma-separated subset of the registered sources")
    parser.add_argument("--api-service-accounts", default="", help="comma-separated emails allowed to call the api")
    parser.add_argument("--api-keys-secret", help="Secret Manager secret holding TRIBUTARY_API_KEYS")
    parser.add_argument("--stage", choices=ENTRY_POINTS, help="write a deployable tree for this function")
    parser.add_argument("--dest", type=Path, help="where --stage writes")
    args = parser.parse_args(argv)
    try:
        if args.stage:
            if args.dest is None:
                raise PlanError("--stage needs --dest DIR")
            print(stage(args.stage, args.dest))
            return 0
        if not args.project or not args.region:
            raise PlanError("--project and --region are required")
        plan = build_plan(
            project=args.project,
            region=args.region,
            project_number=args.project_number,
            bucket=args.bucket,
            only=args.sources,
            api_service_accounts=[a for a in args.api_service_accounts.split(",") if a],
            api_keys_secret=args.api_keys_secret,
        )
    except PlanError as exc:
        print(f"deploy_plan: {exc}", file=sys.stderr)
        return 2
    for warning in plan.warnings:
        print(f"deploy_plan: warning: {warning}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(plan.as_json(), indent=2))
    else:
        try:
            sys.stdout.write(plan.shell())
        except PlanError as exc:
            print(f"deploy_plan: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
