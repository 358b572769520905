"""The CLI's pure parts: one target resolution order, params parsing, one-line errors, a source's params."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import typer

from common.core.errors import ConfigError
from common.local.state import StackState
from common.ops.cli.common import parse_params, source_names
from common.ops.cli.errors import NO_CREDENTIALS, explain
from common.ops.cli.sources import next_runs, param_rows
from common.ops.target import configured_project, resolve
from common.sources import get_source


def _stack(state_dir: Path) -> Path:
    state_dir.mkdir(parents=True)
    StackState(
        project="stack-project",
        endpoints={"api_url": "http://127.0.0.1:18080"},
        env={"FIRESTORE_EMULATOR_HOST": "127.0.0.1:18086", "TRIBUTARY_PROJECT": "stack-project"},
        pids={},
        state_dir=str(state_dir),
        started_at=0.0,
    ).save(state_dir / "stack.json")
    return state_dir


@pytest.fixture
def no_gcloud(tmp_path: Path) -> dict[str, str]:
    return {"CLOUDSDK_CONFIG": str(tmp_path / "gcloud")}


def test_the_flag_wins_over_everything(tmp_path: Path, no_gcloud: dict[str, str]) -> None:
    stack = _stack(tmp_path / "dev")
    env = {**no_gcloud, "TRIBUTARY_PROJECT": "env-project", "FIRESTORE_EMULATOR_HOST": "127.0.0.1:1"}
    chosen = resolve(stack, "flag-project", env)
    assert (chosen.kind, chosen.settings.project, chosen.describe()) == (
        "project",
        "flag-project",
        "project flag-project",
    )
    assert chosen.settings.firestore_emulator_host is None, "a real project never keeps an emulator host"
    local = resolve(stack, "local", env)
    assert local.local and local.api_url == "http://127.0.0.1:18080"
    assert local.describe() == f"local stack ({stack})"


def test_then_the_environment_then_the_stack_then_gcloud(tmp_path: Path, no_gcloud: dict[str, str]) -> None:
    stack = _stack(tmp_path / "dev")
    from_env = resolve(stack, None, {**no_gcloud, "GOOGLE_CLOUD_PROJECT": "env-project"})
    assert from_env.describe() == "project env-project"
    assert resolve(stack, None, no_gcloud).describe() == f"local stack ({stack})"
    gcloud = Path(no_gcloud["CLOUDSDK_CONFIG"])
    (gcloud / "configurations").mkdir(parents=True)
    (gcloud / "configurations" / "config_default").write_text("[core]\nproject = gcloud-project\n")
    assert configured_project(no_gcloud) == "gcloud-project"
    assert resolve(tmp_path / "none", None, no_gcloud).describe() == "project gcloud-project"


def test_no_target_at_all_says_how_to_give_one(tmp_path: Path, no_gcloud: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"--project P.*TRIBUTARY_PROJECT.*tributary dev up"):
        resolve(tmp_path, None, no_gcloud)
    with pytest.raises(ConfigError, match="no local stack runs"):
        resolve(tmp_path, "local", no_gcloud)


def test_list_params_take_commas_and_json_still_works() -> None:
    assert parse_params(["streams=events,mentions", "slot=20191024143000"], "gdelt") == {
        "streams": ["events", "mentions"],
        "slot": "20191024143000",
    }
    assert parse_params(['streams=["gkg"]'], "gdelt") == {"streams": ["gkg"]}
    assert parse_params(["streams=events"], "gdelt") == {"streams": ["events"]}
    assert get_source("gdelt").validate_params(parse_params(["streams=events,mentions"], "gdelt"))
    assert parse_params(["a=x,y"], "no-such-source") == {"a": "x,y"}


def test_a_repeated_param_is_an_error() -> None:
    with pytest.raises(typer.Exit):
        parse_params(["slot=1", "slot=2"], "gdelt")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConfigError("TRIBUTARY_AUTH='x': bad"), "TRIBUTARY_AUTH='x': bad"),
        (httpx.ConnectError("refused"), "is the target running"),
        (ConnectionRefusedError(111, "refused"), "could not connect"),
        (ValueError("boom\nmore"), "unexpected ValueError: boom (run with --debug"),
    ],
)
def test_failures_explain_themselves_in_one_line(exc: BaseException, expected: str) -> None:
    line = explain(exc)
    assert expected in line and "\n" not in line


def test_google_failures_say_what_to_do() -> None:
    from google.api_core import exceptions as api
    from google.auth.exceptions import DefaultCredentialsError

    assert explain(DefaultCredentialsError("Your default credentials were not found.")) == NO_CREDENTIALS
    wrapped = RuntimeError("while listing")
    wrapped.__cause__ = DefaultCredentialsError("nope")
    assert explain(wrapped) == NO_CREDENTIALS
    assert explain(api.PermissionDenied("caller lacks datastore.entities.list")).startswith("permission denied")
    assert "did not answer" in explain(api.ServiceUnavailable("connection refused"))


def test_a_source_shows_its_params_and_next_runs() -> None:
    rows = {r["name"]: r for r in param_rows(get_source("gdelt").params_model.model_json_schema())}
    assert rows["streams"]["type"] == "list[one of events, mentions, gkg]"
    assert json.loads(rows["streams"]["default"]) == ["events"]
    assert rows["streams"]["description"]
    runs = next_runs("0 6 * * *", "Europe/Paris", count=2)
    assert [r.hour for r in runs] == [6, 6] and runs[1] > runs[0]


def test_completion_knows_the_sources() -> None:
    assert source_names("gd") == ["gdelt"]
    assert "fred" in source_names()
