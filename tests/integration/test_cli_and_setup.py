"""What a new user meets first: a missing emulator's message, secrets for the local stack, the CLI's errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.core.errors import ConfigError
from common.local.stack import emulator_commands
from common.ops.cli import app


def test_a_missing_pubsub_emulator_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "platform").mkdir()
    monkeypatch.setenv("CLOUDSDK_ROOT", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        emulator_commands("127.0.0.1", {"pubsub": 1, "firestore": 2})
    assert "google-cloud-cli-pubsub-emulator" in info.value.message
    assert "gcloud components install pubsub-emulator" in info.value.message


def test_a_missing_firestore_emulator_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pubsub = tmp_path / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
    pubsub.parent.mkdir(parents=True)
    pubsub.write_text("#!/bin/sh\n")
    monkeypatch.setenv("CLOUDSDK_ROOT", str(tmp_path))
    with pytest.raises(ConfigError, match="google-cloud-cli-firestore-emulator"):
        emulator_commands("127.0.0.1", {"pubsub": 1, "firestore": 2})


def test_make_demo_fails_clearly_without_emulators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "platform").mkdir()
    monkeypatch.setenv("CLOUDSDK_ROOT", str(tmp_path))
    # The emulated profile, asked for by name (without it, demo falls back to the embedded profile:
    # tests/e2e/test_no_google.py).
    result = CliRunner().invoke(app, ["demo", "--profile", "gcp", "--state-dir", str(tmp_path / "demo")])
    assert result.exit_code == 1
    assert "Pub/Sub emulator is missing" in result.output


def test_secrets_set_local_feeds_the_local_stack(tmp_path: Path) -> None:
    from common.gcp.secrets import get_secret

    result = CliRunner().invoke(app, ["secrets", "set", "FRED_API_KEY", "abc123", "--local"])
    assert result.exit_code == 0, result.output
    assert get_secret("FRED_API_KEY") == "abc123"
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600
    empty = CliRunner().invoke(app, ["secrets", "set", "FRED_API_KEY", "", "--local"])
    assert empty.exit_code == 1 and "empty value" in empty.output


def test_commands_without_a_stack_or_api_say_how_to_point_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .tributary/dev/stack.json here
    result = CliRunner().invoke(app, ["jobs", "list"])
    assert result.exit_code == 1 and "TRIBUTARY_API_URL" in result.output
    status = CliRunner().invoke(app, ["dev", "status", "--state-dir", str(tmp_path)])
    assert status.exit_code == 1 and "tributary dev up" in status.output


def test_bad_param_syntax_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIBUTARY_API_URL", "http://127.0.0.1:9")
    result = CliRunner().invoke(app, ["jobs", "submit", "gdelt", "-p", "slot"])
    assert result.exit_code == 1 and "KEY=VALUE" in result.output
