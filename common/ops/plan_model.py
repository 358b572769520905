"""The deploy plan's records: what ``deploy.sh`` reads, one tab-separated line each (``common.ops.deploy_plan``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


class PlanError(ValueError):
    """The plan cannot be made from this input; the message says what to change."""


@dataclass(frozen=True)
class FunctionSize:
    memory: str
    timeout: int
    max_instances: int


#: The shared functions' sizes. The api may create a large backfill (up to 50,000 jobs) in one request.
API_SIZE = FunctionSize(memory="512Mi", timeout=300, max_instances=20)
STATUS_SIZE = FunctionSize(memory="512Mi", timeout=60, max_instances=10)


@dataclass(frozen=True)
class SecretRef:
    source: str  # the source that declares it, or "api"
    name: str
    env: str
    account: str = ""  # the runtime service account that reads it

    @property
    def flag(self) -> str:
        """The ``--set-secrets`` entry: the env var the code reads, from the secret's newest version."""
        return f"{self.env}={self.name}:latest"


@dataclass(frozen=True)
class QueuePlan:
    source: str
    name: str
    max_dispatches_per_second: str
    max_concurrent_dispatches: int
    max_attempts: int
    min_backoff: str
    max_backoff: str
    max_doublings: int


@dataclass(frozen=True)
class FunctionPlan:
    kind: str  # api | status | ingest
    name: str
    entry_point: str
    memory: str
    timeout: str
    max_instances: int
    env: dict[str, str]
    source: str | None = None
    secrets: tuple[SecretRef, ...] = ()

    @property
    def env_flag(self) -> str:
        """The ``--set-env-vars`` value (gcloud's ``^;^`` escape when a value holds a comma)."""
        items = [f"{k}={v}" for k, v in self.env.items()]
        if any("," in v for v in self.env.values()):
            return "^;^" + ";".join(items)
        return ",".join(items)

    @property
    def secrets_flag(self) -> str:
        return ",".join(s.flag for s in self.secrets)


@dataclass
class Plan:
    project: str
    region: str
    project_number: str
    bucket: str
    consts: dict[str, str]
    queues: list[QueuePlan]
    functions: list[FunctionPlan]
    secrets: list[SecretRef]
    schedules: list[tuple[str, str, str]]
    #: Firestore composite indexes: (collection, "field:order,...").
    indexes: list[tuple[str, str]] = field(default_factory=list)
    #: Firestore TTL policies: (collection group, timestamp field whose time deletes the document).
    ttls: list[tuple[str, str]] = field(default_factory=list)
    #: Firestore single-field index exemptions: (collection group, field never queried, whose entries go unindexed).
    unindexed: list[tuple[str, str]] = field(default_factory=list)
    #: Things that will not stop the deploy but may break the deployed functions.
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for fn, raw in zip(self.functions, out["functions"], strict=True):
            raw["env_flag"] = fn.env_flag
            raw["secrets_flag"] = fn.secrets_flag
        return out

    def records(self) -> Iterable[tuple[str, ...]]:
        for key, value in self.consts.items():
            yield ("const", key, value)
        for q in self.queues:
            yield (
                "queue",
                q.source,
                q.name,
                q.max_dispatches_per_second,
                str(q.max_concurrent_dispatches),
                str(q.max_attempts),
                q.min_backoff,
                q.max_backoff,
                str(q.max_doublings),
            )
        for fn in self.functions:
            yield (
                "function",
                fn.kind,
                fn.name,
                fn.entry_point,
                fn.memory,
                fn.timeout,
                str(fn.max_instances),
                fn.source or "-",
                fn.env_flag,
                fn.secrets_flag or "-",
            )
        for s in self.secrets:
            yield ("secret", s.source, s.name, s.env, s.account)
        for collection, fields in self.indexes:
            yield ("index", collection, fields)
        for group, ttl_field in self.ttls:
            yield ("ttl", group, ttl_field)
        for group, map_field in self.unindexed:
            yield ("unindexed", group, map_field)
        for source, cron, zone in self.schedules:
            yield ("schedule", source, cron, zone)

    def shell(self) -> str:
        lines = []
        for record in self.records():
            for value in record:
                if not value or "\t" in value or "\n" in value:
                    raise PlanError(f"cannot write {record[:2]} as a shell record: field {value!r}")
            lines.append("\t".join(record))
        return "\n".join(lines) + "\n"
