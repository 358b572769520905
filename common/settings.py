"""Typed settings, read from the environment once (prefix ``TRIBUTARY_``).

A pydantic model filled from ``os.environ`` by :meth:`Settings.from_env`, not pydantic-settings: that
package costs every cold start about 65 ms of import (it brings asyncio, dotenv and its CLI machinery),
measured after functions-framework in a fresh interpreter, against about 60 ms for pydantic itself and
about 20 ms for all of Tributary's own modules (BENCHMARKS.md, P2). What it did for us here was this
loop: one environment variable per field, ``TRIBUTARY_<FIELD>`` unless the field names its own.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from common.core.errors import ConfigError

PREFIX = "TRIBUTARY_"
#: Fields whose values an error message never shows.
SECRET_FIELDS = frozenset({"api_keys", "api_key"})
#: A comma-separated list in the environment (``a@x,b@y``), a tuple in Python.
CommaList = tuple[str, ...]


class Settings(BaseModel):
    """Deployment settings. Every field can be set as ``TRIBUTARY_<FIELD>``.

    The emulator hosts also accept Google's own variable names (``PUBSUB_EMULATOR_HOST``,
    ``FIRESTORE_EMULATOR_HOST``) so that the stock clients and ours agree.
    """

    # Frozen, so a Settings is hashable: clients are cached per Settings (common.gcp.clients).
    model_config = ConfigDict(extra="ignore", validate_by_name=True, validate_by_alias=True, frozen=True)

    project: str = Field("tributary-local", validation_alias=AliasChoices("TRIBUTARY_PROJECT", "GOOGLE_CLOUD_PROJECT"))
    region: str = "us-central1"
    topic: str = "ingest-events"
    # Where raw and normalized outputs land: a local directory path, file:// or gs:// URI.
    output_uri: str = "file://./.tributary/data"
    # URL of the deployed ingest function per source; "{source}" is replaced by the source name.
    ingest_url: str = "http://127.0.0.1:8081/{source}"
    # Service account that Cloud Tasks and Cloud Scheduler use to mint OIDC tokens (empty: no token).
    invoker_service_account: str = ""
    # Queue names are "<queue_prefix><source>".
    queue_prefix: str = "ingest-"

    # Authentication of incoming requests (docs/security.md). "auto": on when running on Google Cloud
    # (K_SERVICE is set by Cloud Run and Cloud Functions), off elsewhere; the local stack sets it per function.
    auth: Literal["auto", "on", "off"] = "auto"
    # Where Google's public keys for ID tokens are (JWKS, or the v1 {kid: PEM} shape); the local stack serves its own.
    oidc_certs_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    # Upper bound, in seconds, for caching those keys (a shorter Cache-Control max-age wins).
    oidc_certs_ttl: float = Field(3600.0, ge=5.0, le=86400.0)
    # Service accounts whose ID tokens are accepted, besides invoker_service_account (comma list).
    oidc_allowed_service_accounts: CommaList = ()
    # Accepted token audiences (comma list); empty: the function's own URL (api_url, ingest_url).
    oidc_audience: CommaList = ()
    # API keys for the public API (header X-API-Key), comma list of "sha256:<hex>" (or, locally, plain keys).
    api_keys: CommaList = ()
    # Seconds a Firestore or Secret Manager call may take, retries included, before it fails (the clients'
    # own defaults are 60 to 300).
    call_deadline: float = Field(20.0, gt=0.0, le=300.0)
    # The same bound for the api's reads (GET): shorter, so that during a Firestore outage a read frees its
    # worker thread (8 per instance) and answers 503 soon; writes and the ingest path keep call_deadline.
    api_read_deadline: float = Field(10.0, gt=0.0, le=300.0)
    # The api function's base URL: Cloud Scheduler's token audience, and the CLI's default target.
    api_url: str = ""

    pubsub_emulator_host: str | None = Field(
        None, validation_alias=AliasChoices("PUBSUB_EMULATOR_HOST", "TRIBUTARY_PUBSUB_EMULATOR_HOST")
    )
    firestore_emulator_host: str | None = Field(
        None, validation_alias=AliasChoices("FIRESTORE_EMULATOR_HOST", "TRIBUTARY_FIRESTORE_EMULATOR_HOST")
    )
    tasks_emulator_host: str | None = Field(
        None, validation_alias=AliasChoices("CLOUD_TASKS_EMULATOR_HOST", "TRIBUTARY_TASKS_EMULATOR_HOST")
    )
    scheduler_emulator_host: str | None = Field(
        None,
        validation_alias=AliasChoices("CLOUD_SCHEDULER_EMULATOR_HOST", "TRIBUTARY_SCHEDULER_EMULATOR_HOST"),
    )
    # Plaintext gRPC "host:port" standing in for Secret Manager (tests only: Google ships no emulator for it).
    secret_manager_emulator_host: str | None = None

    # Log level of every function (common.runtime.logs.setup_logging).
    log_level: str = "INFO"
    # Log lines as JSON objects for Cloud Logging, or as text; "auto": JSON on Cloud Run / Cloud Functions
    # (K_SERVICE is set), text elsewhere (common.runtime.logs).
    log_format: Literal["auto", "json", "text"] = "auto"
    # The source an ingest function is deployed for (one function per source); empty: any source.
    source: str = ""
    # Extra source classes, "module:Class" entries separated by commas (common.sources).
    extra_sources: str = ""
    # The local secrets file (common.gcp.secrets), and whether Secret Manager is never asked (local stack, tests).
    secrets_file: str = ".tributary/secrets.json"
    no_secret_manager: bool = False
    # The API key the CLI sends (header X-API-Key) to the API it talks to.
    api_key: str = ""
    # A TOML file of per-deployment schedule overrides (scheduler.sync.load_overrides); empty: none.
    schedule_overrides: str = ""
    # The local stack's RSA key, shared by its emulators' token signers (common.local.emulators.oidc); empty: a new key.
    oidc_key_file: str = ""
    # The upstream HTTP client (common.sources.http): seconds between bytes, and the largest download.
    http_read_timeout: float = Field(60.0, gt=0.0)
    max_download_bytes: int = Field(2 * 1024**3, gt=0)

    # Days a job document and its event markers are kept: their ``expire_at``, which the TTL policy that
    # deploy.sh sets deletes after (common.gcp.firestore.codec, docs/deploy.md).
    retention_days: int = Field(90, ge=1, le=3650)

    # The warehouse the load stage writes (docs/warehouse.md): "duckdb" (an embedded file) or "bigquery".
    warehouse: Literal["duckdb", "bigquery"] = "duckdb"
    # The DuckDB file of the embedded warehouse; empty: ``.tributary/warehouse.duckdb`` (the local stack sets
    # its own, under its state folder).
    warehouse_path: str = ""
    # The BigQuery dataset the tables live in (in ``project``), and its location.
    bigquery_dataset: str = "tributary"
    bigquery_location: str = "US"
    # A BigQuery REST endpoint standing in for Google's (the local stack's BigQuery emulator); empty: Google's.
    bigquery_emulator_host: str | None = None

    # The executor (docs/design.md, "Executors"): a profile picks the dispatch, events and state adapters
    # together; "gcp" is Cloud Tasks + Pub/Sub + Firestore, "embedded" one process with SQLite, "celery"
    # Celery dispatch with embedded events and SQLite state. Each port can be set on its own (empty: the
    # profile's): dispatch "cloudtasks" | "celery" | "embedded", events "pubsub" | "embedded", state
    # "firestore" | "sqlite" (common.runtime.executors).
    profile: Literal["gcp", "embedded", "celery"] = "gcp"
    dispatch: str = ""
    events: str = ""
    state: str = ""
    # Per-source dispatchers, "source=dispatcher" separated by commas ("fred=celery,gdelt=embedded").
    dispatch_routes: str = ""
    # The SQLite file of the embedded state, queue and event outbox.
    sqlite_path: str = ".tributary/tributary.sqlite"
    # Seconds an embedded worker's claim on a task lasts without renewal (a killed worker's task runs again
    # after it), and worker threads per embedded process.
    embedded_lease: float = Field(30.0, ge=1.0, le=3600.0)
    embedded_workers: int = Field(8, ge=1, le=256)
    # Worker processes of the embedded executor (each with embedded_workers threads; 0: one per core). One
    # process is the light start; more use every core for CPU-bound parsing, as Celery's prefork pool does.
    embedded_processes: int = Field(1, ge=0, le=64)
    # Whether the embedded bus also runs the load stage for each event (as the load function does on Pub/Sub).
    embedded_load: bool = True
    # The Celery executor's Redis broker (and result backend).
    celery_broker_url: str = "redis://127.0.0.1:6379/0"
    # Seconds an unacknowledged Celery task waits before Redis hands it to another worker (a worker killed
    # mid-task): longer than the longest dispatch deadline (30 min), or long tasks would run twice.
    celery_visibility_timeout: float = Field(3600.0, gt=0.0)
    # Seconds a task id stays known to the Celery dispatcher, so a duplicate enqueue is refused (Cloud Tasks
    # remembers a task name about an hour).
    celery_dedup_ttl: float = Field(3600.0, gt=0.0)

    @field_validator("oidc_allowed_service_accounts", "oidc_audience", "api_keys", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @classmethod
    def env_names(cls, field: str) -> tuple[str, ...]:
        """The environment variables that set ``field``, in order of precedence."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, AliasChoices):
            return tuple(str(choice) for choice in alias.choices)
        return (PREFIX + field.upper(),)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the environment (``os.environ`` by default); unset variables keep their defaults.

        Raises:
            ConfigError: a variable's value is invalid (the message names the variable).
        """
        env = os.environ if environ is None else environ
        values = {}
        for field in cls.model_fields:
            name = next((n for n in cls.env_names(field) if n in env), None)
            if name is not None:
                values[field] = env[name]
        try:
            return cls.model_validate(values, by_name=True)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0])
            name = next((n for n in cls.env_names(field) if n in env), field)
            shown = "" if field in SECRET_FIELDS else f"={values.get(field)!r}"  # never echo a key
            raise ConfigError(f"{name}{shown}: {err['msg']}") from None


_lock = threading.Lock()
_loaded: Settings | None = None
#: Settings installed by :func:`use_settings`, innermost last (they win over the environment's).
_overrides: list[Settings] = []


def settings() -> Settings:
    """The process-wide settings: those installed by :func:`use_settings`, else the environment's (read once)."""
    global _loaded
    if _overrides:
        return _overrides[-1]
    if _loaded is None:
        with _lock:
            if _loaded is None:
                _loaded = Settings.from_env()
    return _loaded


@contextlib.contextmanager
def use_settings(value: Settings) -> Iterator[Settings]:
    """Make ``value`` the process-wide settings for a block (an operator command aimed at another target).

    Process-wide, not per thread, because the code under it fans calls out to thread pools.
    """
    with _lock:
        _overrides.append(value)
    try:
        yield value
    finally:
        with _lock:
            del _overrides[max(i for i, s in enumerate(_overrides) if s is value)]


def reset_settings() -> None:
    """Forget cached settings (tests change the environment between cases)."""
    global _loaded
    with _lock:
        _loaded = None
