"""Typed settings, read from the environment once (prefix ``TRIBUTARY_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, loaded on first use."""
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests change the environment between cases)."""
    settings.cache_clear()
