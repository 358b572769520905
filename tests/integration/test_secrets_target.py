"""``tributary secrets set`` writes where the target's functions read, and a running stack sees it at once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.core.errors import ConfigError
from common.gcp.secrets import set_command
from common.local.state import StackConfig, StackState
from common.ops.cli import app
from common.runtime.ingest import load_secrets
from common.settings import Settings, reset_settings
from common.sources import get_source

FRED = get_source("fred")


def fake_stack(root: Path, secrets: Path) -> Path:
    """A recorded stack (what ``tributary dev up`` leaves in ``.tributary/dev``) whose functions read ``secrets``."""
    state_dir = root / ".tributary" / "dev"
    state_dir.mkdir(parents=True)
    env = {"FIRESTORE_EMULATOR_HOST": "127.0.0.1:9", "TRIBUTARY_NO_SECRET_MANAGER": "1",
           "TRIBUTARY_SECRETS_FILE": str(secrets)}  # fmt: skip
    StackState("tributary-local", {"api_url": "http://127.0.0.1:9"}, env, {}, str(state_dir), time.time()).save(
        state_dir / "stack.json"
    )
    return state_dir


def test_secrets_set_writes_the_running_stacks_file_and_its_next_task_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_secrets = tmp_path / "project" / ".tributary" / "secrets.json"
    fake_stack(tmp_path, stack_secrets)
    monkeypatch.chdir(tmp_path)
    # The functions' side: they run elsewhere (their cwd is the state folder) and read the stack's one path.
    monkeypatch.setenv("TRIBUTARY_SECRETS_FILE", str(stack_secrets))
    reset_settings()
    with pytest.raises(ConfigError, match="tributary secrets set FRED_API_KEY VALUE"):
        load_secrets(FRED)
    monkeypatch.setenv("TRIBUTARY_SECRETS_FILE", str(tmp_path / "elsewhere.json"))  # the CLI's own default differs
    reset_settings()
    result = CliRunner().invoke(app, ["secrets", "set", "FRED_API_KEY", "abc"])
    assert result.exit_code == 0, result.output
    assert "target: local stack" in result.output and "no restart" in result.output
    assert json.loads(stack_secrets.read_text()) == {"FRED_API_KEY": "abc"}
    assert stack_secrets.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "elsewhere.json").exists()
    monkeypatch.setenv("TRIBUTARY_SECRETS_FILE", str(stack_secrets))
    reset_settings()
    assert load_secrets(FRED) == {"FRED_API_KEY": "abc"}
    assert CliRunner().invoke(app, ["secrets", "set", "FRED_API_KEY", "def", "--local"]).exit_code == 0
    assert load_secrets(FRED) == {"FRED_API_KEY": "def"}, "read at every task, not once"


def test_a_missing_secret_names_the_commands_that_fix_it_where_the_function_runs() -> None:
    with pytest.raises(ConfigError) as info:
        load_secrets(FRED, job_id="fred-abc")
    assert info.value.message.endswith(
        "set it with `tributary secrets set FRED_API_KEY VALUE`, then `tributary jobs retry fred-abc`"
    )
    cloud = Settings.from_env({"TRIBUTARY_PROJECT": "acme-data"})
    assert set_command("FRED_API_KEY", cloud) == "tributary --project acme-data secrets set FRED_API_KEY VALUE"


def test_a_broken_secrets_file_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "secrets.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="fix or delete it"):
        load_secrets(FRED)
    result = CliRunner().invoke(app, ["secrets", "set", "FRED_API_KEY", "abc", "--local"])
    assert result.exit_code == 1 and "fix or delete it" in result.output and "Traceback" not in result.output


def test_without_a_stack_or_google_credentials_secrets_set_answers_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.delenv("CLOUDSDK_CORE_PROJECT", raising=False)
    for args in (["secrets", "set", "FRED_API_KEY", "abc"], ["queues", "list"], ["jobs", "retry", "fred-x"],
                 ["jobs", "cancel", "fred-x"], ["queues", "pause", "fred"]):  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1 and "tributary dev up" in result.output, result.output


def test_dev_up_gives_the_functions_one_absolute_secrets_file_and_no_placeholder(tmp_path: Path) -> None:
    from common.local.stack import Stack

    stack = Stack(StackConfig(state_dir=tmp_path / "dev", replay_dir=tmp_path, secret_placeholders=False))
    stack._choose_ports()
    env = stack._function_env(tmp_path / "key.json")
    assert Path(env["TRIBUTARY_SECRETS_FILE"]).is_absolute()
    assert env["TRIBUTARY_SECRETS_FILE"] == str(tmp_path / "secrets.json")  # the tests' TRIBUTARY_SECRETS_FILE
    assert "TRIBUTARY_SECRET_FRED_API_KEY" not in env
    demo = Stack(StackConfig(state_dir=tmp_path / "demo", replay_dir=tmp_path))
    demo._choose_ports()
    assert demo._function_env(tmp_path / "key.json")["TRIBUTARY_SECRET_FRED_API_KEY"] == "replay-placeholder"
