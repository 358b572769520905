"""Every Google Cloud resource name and path Tributary uses, built from the settings: the one place for them.

The runtime, the local stack, the dead-letter tools, the schedules and the deploy plan all take their names
from here, so a setting such as ``TRIBUTARY_TOPIC`` renames a resource everywhere at once. The paths are the
ones the clients' ``*_path`` helpers build (``PublisherClient.topic_path``, ``CloudTasksClient.queue_path``),
written as pure functions so that naming a resource never imports a Google client library.
"""

from __future__ import annotations

from common.settings import Settings, settings

#: Every deployed name starts with this, so Tributary's functions, jobs and accounts stand out in a shared project.
PREFIX = "tributary-"
#: The push subscription that delivers job events to the status function.
STATUS_SUBSCRIPTION = "status-push"
#: The dead-letter topic is the events topic plus this suffix.
DEAD_TOPIC_SUFFIX = "-dead"
#: Messages dead-lettered to a topic without a subscription are lost, so the dead-letter topic gets one.
DEAD_SUBSCRIPTION_SUFFIX = "-pull"
#: The Cloud Scheduler job that runs the reaper.
REAPER_JOB = f"{PREFIX}reaper"

# Firestore collections (docs/design.md): jobs and their subcollections, sources and their runs, batches,
# and the events the status function could never read.
JOBS, EVENTS, PARTS = "jobs", "events", "parts"
SOURCES, RUNS = "sources", "runs"
BATCHES = "batches"
DEAD_EVENTS = "dead_events"
#: The load stage: its push subscription on the events topic; ``loads``, the job document's map of its reports
#: (an earlier layout kept each under ``jobs/{id}/loads``).
LOAD_SUBSCRIPTION = "load-push"
LOADS = "loads"


def _s(s: Settings | None) -> Settings:
    return s if s is not None else settings()


# ---- projects and locations ------------------------------------------------------------------------


def project_path(s: Settings | None = None) -> str:
    """``projects/P``."""
    return "projects/" + _s(s).project


def location_path(s: Settings | None = None, *, project: str | None = None, region: str | None = None) -> str:
    """``projects/P/locations/R`` (the parent of queues and scheduler jobs)."""
    s = _s(s)
    return "/".join(("projects", project or s.project, "locations", region or s.region))


# ---- Pub/Sub ---------------------------------------------------------------------------------------


def topic_id(s: Settings | None = None) -> str:
    """The events topic (``TRIBUTARY_TOPIC``)."""
    return _s(s).topic


def dead_topic_id(s: Settings | None = None) -> str:
    """The dead-letter topic of the events topic."""
    return topic_id(s) + DEAD_TOPIC_SUFFIX


def dead_subscription_id(s: Settings | None = None) -> str:
    """The pull subscription that keeps the dead-letter topic's messages."""
    return dead_topic_id(s) + DEAD_SUBSCRIPTION_SUFFIX


def topic_path(s: Settings | None = None, *, topic: str | None = None) -> str:
    """``projects/P/topics/T`` for the events topic (or ``topic``)."""
    return "/".join((project_path(s), "topics", topic or topic_id(s)))


def dead_topic_path(s: Settings | None = None) -> str:
    return topic_path(s, topic=dead_topic_id(s))


def subscription_path(subscription: str, s: Settings | None = None) -> str:
    """``projects/P/subscriptions/S``."""
    return "/".join((project_path(s), "subscriptions", subscription))


def status_subscription_path(s: Settings | None = None) -> str:
    return subscription_path(STATUS_SUBSCRIPTION, s)


def dead_subscription_path(s: Settings | None = None) -> str:
    return subscription_path(dead_subscription_id(s), s)


def push_endpoint(status_url: str, s: Settings | None = None) -> str:
    """The status function's push URL: functions-framework takes the topic from the path (``/projects/P/topics/T``)."""
    return status_url.rstrip("/") + "/" + topic_path(s)


# ---- Cloud Tasks -----------------------------------------------------------------------------------


def queue_id(source: str, s: Settings | None = None) -> str:
    """A source's queue: ``<queue_prefix><source>``."""
    return _s(s).queue_prefix + source


def queue_path(source: str, s: Settings | None = None) -> str:
    """``projects/P/locations/R/queues/Q`` of a source's queue."""
    return "/".join((location_path(s), "queues", queue_id(source, s)))


def task_path(source: str, task: str, s: Settings | None = None) -> str:
    """``…/queues/Q/tasks/T``."""
    return "/".join((queue_path(source, s), "tasks", task))


# ---- Cloud Scheduler -------------------------------------------------------------------------------


def scheduler_job_path(job: str, *, project: str, region: str) -> str:
    """``projects/P/locations/R/jobs/J``."""
    return "/".join((location_path(project=project, region=region), "jobs", job))


# ---- Secret Manager --------------------------------------------------------------------------------


def secret_path(name: str, s: Settings | None = None) -> str:
    """``projects/P/secrets/S``."""
    return "/".join((project_path(s), "secrets", name))


def secret_version_path(name: str, version: str = "latest", s: Settings | None = None) -> str:
    """``projects/P/secrets/S/versions/V``."""
    return "/".join((secret_path(name, s), "versions", version))


# ---- Cloud Run and IAM -----------------------------------------------------------------------------


def function_name(kind: str, source: str | None = None) -> str:
    """A deployed function: ``tributary-<kind>`` or ``tributary-ingest-<source>``."""
    return f"{PREFIX}{kind}" + (f"-{source}" if source else "")


def service_account(account_id: str, project: str) -> str:
    """A service account's email."""
    return f"{account_id}@{project}.iam.gserviceaccount.com"


def invoker_account(project: str) -> str:
    """The account whose ID tokens Cloud Tasks and Cloud Scheduler send."""
    return service_account(f"{PREFIX}invoker", project)


def pubsub_service_agent(project_number: str) -> str:
    """Pub/Sub's own service agent (it forwards dead letters, so it needs roles on the dead-letter topic)."""
    return f"service-{project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
