"""Settings from the environment (``common/settings.py``): names, precedence, lists, and clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.core.errors import ConfigError
from common.settings import Settings, reset_settings, settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_field_is_read_from_its_variable_and_unset_ones_keep_defaults() -> None:
    s = Settings.from_env(
        {
            "TRIBUTARY_REGION": "europe-west1",
            "TRIBUTARY_OIDC_CERTS_TTL": "60",
            "TRIBUTARY_AUTH": "on",
            "UNRELATED": "x",
        }
    )
    assert (s.region, s.oidc_certs_ttl, s.auth) == ("europe-west1", 60.0, "on")
    assert s.topic == "ingest-events" and s.project == "tributary-local"
    assert Settings.from_env({}) == Settings()


def test_google_names_are_accepted_and_ours_win() -> None:
    assert Settings.from_env({"GOOGLE_CLOUD_PROJECT": "g"}).project == "g"
    assert Settings.from_env({"GOOGLE_CLOUD_PROJECT": "g", "TRIBUTARY_PROJECT": "t"}).project == "t"
    s = Settings.from_env({"PUBSUB_EMULATOR_HOST": "127.0.0.1:1", "TRIBUTARY_FIRESTORE_EMULATOR_HOST": "127.0.0.1:2"})
    assert (s.pubsub_emulator_host, s.firestore_emulator_host) == ("127.0.0.1:1", "127.0.0.1:2")
    assert Settings.env_names("tasks_emulator_host") == ("CLOUD_TASKS_EMULATOR_HOST", "TRIBUTARY_TASKS_EMULATOR_HOST")
    assert Settings.env_names("region") == ("TRIBUTARY_REGION",)


def test_comma_lists_are_split_and_trimmed() -> None:
    s = Settings.from_env({"TRIBUTARY_OIDC_AUDIENCE": " https://a , https://b,, ", "TRIBUTARY_API_KEYS": ""})
    assert s.oidc_audience == ("https://a", "https://b")
    assert s.api_keys == ()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRIBUTARY_AUTH": "maybe"}, "TRIBUTARY_AUTH='maybe': Input should be 'auto', 'on' or 'off'"),
        ({"TRIBUTARY_OIDC_CERTS_TTL": "1"}, "TRIBUTARY_OIDC_CERTS_TTL='1': Input should be greater than or equal to 5"),
        (
            {"TRIBUTARY_CALL_DEADLINE": "soon"},
            "TRIBUTARY_CALL_DEADLINE='soon': Input should be a valid number, unable to parse string as a number",
        ),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.message == message


def test_settings_are_read_from_os_environ_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIBUTARY_REGION", "asia-east1")
    reset_settings()
    assert settings().region == "asia-east1"
    monkeypatch.setenv("TRIBUTARY_REGION", "us-east1")
    assert settings().region == "asia-east1", "cached until reset"
    reset_settings()
    assert settings().region == "us-east1"


def test_no_function_imports_pydantic_settings() -> None:
    """It cost every cold start about 65 ms of import (BENCHMARKS.md, P2); settings are read by hand instead."""
    code = "import sys, functions.api, functions.ingest, functions.status; print('pydantic_settings' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_resource_name_follows_the_settings() -> None:
    """One place for names (common/gcp/names.py): renaming the topic renames its dead-letter topic and subscription."""
    from common.gcp import names

    s = Settings.from_env({"TRIBUTARY_TOPIC": "ev", "TRIBUTARY_PROJECT": "p", "TRIBUTARY_QUEUE_PREFIX": "q-"})
    assert names.topic_path(s) == "projects/p/topics/ev"
    assert names.dead_topic_path(s) == "projects/p/topics/ev-dead"
    assert names.dead_subscription_path(s) == "projects/p/subscriptions/ev-dead-pull"
    assert names.status_subscription_path(s) == "projects/p/subscriptions/status-push"
    assert names.queue_path("gdelt", s) == "projects/p/locations/us-central1/queues/q-gdelt"
    assert names.task_path("gdelt", "j1", s) == "projects/p/locations/us-central1/queues/q-gdelt/tasks/j1"
    assert names.push_endpoint("http://h:1/", s) == "http://h:1/projects/p/topics/ev"
    assert names.secret_version_path("K", s=s) == "projects/p/secrets/K/versions/latest"


def test_use_settings_steers_settings_and_clients_without_touching_the_environment() -> None:
    import os

    from common.gcp import clients
    from common.settings import use_settings

    before = dict(os.environ)
    target = Settings.from_env(
        {"FIRESTORE_EMULATOR_HOST": "127.0.0.1:1", "PUBSUB_EMULATOR_HOST": "127.0.0.1:2", "TRIBUTARY_PROJECT": "other"}
    )
    with use_settings(target):
        assert settings() is target
        firestore, publisher = clients.firestore(), clients.publisher()
    assert settings() is not target
    assert dict(os.environ) == before, "no client is steered through os.environ"
    assert firestore.project == "other" and firestore._emulator_host == "127.0.0.1:1"
    assert clients.publisher(target) is publisher, "clients are cached per Settings"
