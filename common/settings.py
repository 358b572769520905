"""Typed settings, read from the environment once (prefix ``TRIBUTARY_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: A comma-separated list in the environment (``a@x,b@y``), a tuple in Python.
CommaList = Annotated[tuple[str, ...], NoDecode]


class Settings(BaseSettings):
    """Deployment settings. Every field can be set as ``TRIBUTARY_<FIELD>``.

    The emulator hosts also accept Google's own variable names (``PUBSUB_EMULATOR_HOST``,
    ``FIRESTORE_EMULATOR_HOST``) so that the stock clients and ours agree.
    """

    model_config = SettingsConfigDict(env_prefix="TRIBUTARY_", extra="ignore")

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

    @field_validator("oidc_allowed_service_accounts", "oidc_audience", "api_keys", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, loaded on first use."""
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests change the environment between cases)."""
    settings.cache_clear()
