"""Staging with the Celery rollback flag: the functions that dispatch ship the Celery extra, pinned, exactly when a
source is sent to Celery (``common.ops.staging``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.ops import deploy_plan
from common.ops.staging import pins, requirements, stage, uses_celery
from common.settings import reset_settings

FLAGS = {
    "dispatch": {"TRIBUTARY_DISPATCH": "celery"},
    "profile": {"TRIBUTARY_PROFILE": "celery"},
    "route": {"TRIBUTARY_DISPATCH_ROUTES": "fred=celery"},
}


def requirement_lines(tree: Path) -> list[str]:
    return [line for line in (tree / "requirements.txt").read_text().splitlines() if not line.startswith("#")]


def celery_lines() -> list[str]:
    exact = pins()
    dist, version = exact["celery"].split("==")
    return [f"{dist}[redis]=={version}", exact["kombu"], exact["redis"]]


@pytest.fixture
def flag(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in FLAGS.get(request.param, {}).items():
        monkeypatch.setenv(key, value)
    reset_settings()
    return str(request.param)


@pytest.mark.parametrize("flag", [*FLAGS, "none", "embedded-route"], indirect=True)
@pytest.mark.parametrize("function", deploy_plan.ENTRY_POINTS)
def test_the_dispatching_functions_ship_celery_exactly_when_a_source_goes_to_it(
    flag: str, function: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if flag == "embedded-route":
        monkeypatch.setenv("TRIBUTARY_DISPATCH_ROUTES", "fred=embedded")
        reset_settings()
    lines = requirement_lines(stage(function, tmp_path / function))
    without = [line for line in requirements(function).splitlines() if not line.startswith("#")]
    if flag in FLAGS and function in ("api", "ingest"):
        assert uses_celery()
        assert sorted(lines) == sorted([*without, *celery_lines()]), "the Celery pins, and the rest unchanged"
    else:
        assert lines == without
        assert not [line for line in lines if line.split("[")[0].split("==")[0] in ("celery", "kombu", "redis")]


def test_the_celery_pin_is_the_constraints_version_with_the_extra_kept() -> None:
    (line,) = [r for r in requirements("api", celery=True).splitlines() if r.startswith("celery")]
    assert line == "celery[redis]==" + pins()["celery"].split("==")[1]
    assert requirements("status", celery=True) == requirements("status"), "status never dispatches"


def test_malformed_routes_fail_the_staging_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIBUTARY_DISPATCH_ROUTES", "fred")
    reset_settings()
    assert deploy_plan.main(["--stage", "api", "--dest", str(tmp_path / "api")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deploy_plan: TRIBUTARY_DISPATCH_ROUTES: 'fred' is not source=dispatcher") and "\n" not in err
    assert not (tmp_path / "api").exists(), "nothing staged"


def test_the_plan_warns_that_the_dispatch_variables_are_not_deployed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert deploy_plan.build_plan(project="p", region="r").warnings == []
    monkeypatch.setenv("TRIBUTARY_DISPATCH", "celery")
    reset_settings()
    (warning,) = deploy_plan.build_plan(project="p", region="r").warnings
    assert "staged with celery[redis]" in warning and "TRIBUTARY_CELERY_BROKER_URL" in warning


#: Runs in a staged api: every distribution its requirements (with their extras) leave out is made unimportable,
#: then the api's dispatcher enqueues to a broker nobody listens on.
ENQUEUE = """
import importlib.abc, importlib.metadata as md, json, re, sys

def parse(line):
    name, extras = re.match(r"\\s*([A-Za-z0-9._-]+)(?:\\[([^\\]]*)\\])?", line).groups()
    return name.lower().replace("_", "-"), {e.strip() for e in (extras or "").split(",") if e.strip()}

dists = {parse(d.metadata["Name"])[0]: d for d in md.distributions()}
needed, todo = set(), [parse(l) for l in open("requirements.txt") if l.strip() and not l.startswith("#")]
while todo:  # the requirements and what they require in turn, with the extras asked for
    name, extras = todo.pop()
    if name in dists and (name, frozenset(extras)) not in needed:
        needed.add((name, frozenset(extras)))
        for r in dists[name].requires or ():
            marker = re.search(r"extra\\s*==\\s*['\\"]([^'\\"]+)", r)
            if marker is None or marker.group(1) in extras:
                todo.append(parse(r))

def modules(dist):
    return {".".join(f.with_suffix("").parts[:-1] if f.stem == "__init__" else f.with_suffix("").parts)
            for f in dist.files or () if f.suffix == ".py" and ".." not in f.parts}

names = {n for n, _ in needed}
allowed = set().union(*(modules(dists[n]) for n in names))
blocked = set().union(*(modules(d) for n, d in dists.items() if n not in names and n != "tributary")) - allowed

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in blocked:
            raise ImportError(f"{name} is not in this function's requirements.txt")

sys.meta_path.insert(0, Block())
import main  # the staged entry point
from common.core.errors import TransientError
from common.core.tasks import TaskPayload
from common.runtime import executors
from common.sources import get_source

payload = TaskPayload(job_id="gdelt-x", source="gdelt", params={})
try:
    executors.dispatcher("gdelt").enqueue(payload, get_source("gdelt").queue)
    outcome = "sent"
except TransientError as exc:
    outcome = "transient: " + exc.message
except ImportError as exc:
    outcome = "import: " + str(exc)
print(json.dumps(outcome))
"""


@pytest.mark.parametrize("staged_with_flag", [True, False])
def test_a_flagged_api_enqueues_to_celery_with_only_its_requirements(
    staged_with_flag: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if staged_with_flag:
        monkeypatch.setenv("TRIBUTARY_DISPATCH", "celery")
        reset_settings()
    tree = stage("api", tmp_path / "api")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")} | {
        "TRIBUTARY_DISPATCH": "celery",  # as set on the deployed api
        "TRIBUTARY_CELERY_BROKER_URL": "redis://127.0.0.1:1/0",  # nobody listens there
    }
    result = subprocess.run([sys.executable, "-c", ENQUEUE], cwd=tree, env=env, capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    if staged_with_flag:
        assert outcome.startswith("transient: "), outcome  # Celery, kombu and redis imported; Redis unreachable
    else:
        assert outcome.startswith("import: "), outcome  # what deploying the flag without this fix did
