"""Schedules as code, against the Cloud Scheduler emulator with the stock client."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from google.cloud import scheduler_v1
from typer.testing import CliRunner

from common.gcp.clients import reset_clients, scheduler_client_for
from common.local.emulators.scheduler import SchedulerEmulator
from common.settings import reset_settings
from scheduler import cli as schedule_cli
from scheduler.sync import apply, desired_jobs, live_jobs, load_overrides, plan, sync, sync_schedules

PROJECT, REGION = "demo", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
API = "http://127.0.0.1:8080"
SA = "invoker@demo.iam.gserviceaccount.com"


@dataclass(frozen=True)
class Schedule:
    cron: str
    time_zone: str = "UTC"


@dataclass(frozen=True)
class Source:
    name: str
    schedule: Schedule | None


SOURCES = [
    Source("gdelt", Schedule("*/15 * * * *")),
    Source("fred", Schedule("0 6 * * *", "America/New_York")),
    Source("adhoc", None),  # no schedule: no job
]


@pytest.fixture
def emu() -> Iterator[SchedulerEmulator]:
    with SchedulerEmulator(clock=datetime(2024, 1, 1, tzinfo=UTC), fire=False) as emulator:
        yield emulator


@pytest.fixture
def client(emu: SchedulerEmulator) -> Iterator[scheduler_v1.CloudSchedulerClient]:
    c = scheduler_client_for(emu.address)
    yield c
    c.transport.close()


def run_sync(client, overrides=None, *, prune=False, dry_run=False, service_account=SA):
    return sync(
        client,
        SOURCES,
        project=PROJECT,
        region=REGION,
        api_url=API,
        service_account=service_account,
        overrides=overrides,
        prune=prune,
        dry_run=dry_run,
    )


def names(client) -> list[str]:
    return sorted(job.name.rsplit("/", 1)[-1] for job in live_jobs(client, PROJECT, REGION))


def test_desired_jobs_shape() -> None:
    jobs = desired_jobs(SOURCES, project=PROJECT, region=REGION, api_url=API + "/", service_account=SA, overrides=None)
    assert [job.name for job in jobs] == [f"{PARENT}/jobs/tributary-fred", f"{PARENT}/jobs/tributary-gdelt"]
    fred = jobs[0]
    assert fred.schedule == "0 6 * * *" and fred.time_zone == "America/New_York"
    target = fred.http_target
    assert target.uri == f"{API}/v1/jobs"
    assert target.http_method == scheduler_v1.HttpMethod.POST
    assert json.loads(target.body) == {"source": "fred", "params": {}}
    assert dict(target.headers) == {"Content-Type": "application/json"}
    assert target.oidc_token.service_account_email == SA and target.oidc_token.audience == API
    assert fred.retry_config.retry_count == 3
    assert fred.retry_config.min_backoff_duration == timedelta(seconds=10)
    assert fred.retry_config.max_backoff_duration == timedelta(seconds=300)
    assert fred.attempt_deadline == timedelta(seconds=60)
    no_sa = desired_jobs(SOURCES, project=PROJECT, region=REGION, api_url=API, service_account="", overrides={})
    assert all("oidc_token" not in job.http_target for job in no_sa)


def test_desired_jobs_rejects_bad_overrides() -> None:
    kwargs = {"project": PROJECT, "region": REGION, "api_url": API, "service_account": SA}
    with pytest.raises(ValueError, match="unknown sources: nope"):
        desired_jobs(SOURCES, overrides={"nope": {"cron": "* * * * *"}}, **kwargs)
    with pytest.raises(ValueError, match="unknown key 'schedule'"):
        desired_jobs(SOURCES, overrides={"gdelt": {"schedule": "* * * * *"}}, **kwargs)
    with pytest.raises(ValueError, match="not a 5-field"):
        desired_jobs(SOURCES, overrides={"gdelt": {"cron": "every 5 minutes"}}, **kwargs)
    # an override can schedule a source that has no schedule of its own
    jobs = desired_jobs(SOURCES, overrides={"adhoc": {"cron": "0 0 * * *"}}, **kwargs)
    assert any(job.name.endswith("/tributary-adhoc") for job in jobs)


def test_sync_creates_jobs_then_is_a_no_op(client) -> None:
    first, result = run_sync(client)
    assert len(first.create) == 2 and not first.update and not first.delete
    assert sorted(result.created) == [f"{PARENT}/jobs/tributary-fred", f"{PARENT}/jobs/tributary-gdelt"]
    assert names(client) == ["tributary-fred", "tributary-gdelt"]
    live = client.get_job(name=f"{PARENT}/jobs/tributary-gdelt")
    assert live.http_target.headers["User-Agent"] == "Google-Cloud-Scheduler"  # added by the service
    assert json.loads(live.http_target.body) == {"source": "gdelt", "params": {}}

    second, result = run_sync(client)
    assert second.empty, (second.create, second.update, second.delete)
    assert sorted(second.unchanged) == [f"{PARENT}/jobs/tributary-fred", f"{PARENT}/jobs/tributary-gdelt"]
    assert not result.changed


def test_changed_cron_is_an_update_with_a_mask(client, emu) -> None:
    run_sync(client)
    before = client.get_job(name=f"{PARENT}/jobs/tributary-gdelt")
    the_plan, result = run_sync(client, {"gdelt": {"cron": "0 * * * *"}})
    assert [(u.name.rsplit("/", 1)[-1], u.paths) for u in the_plan.update] == [("tributary-gdelt", ("schedule",))]
    assert result.updated == [f"{PARENT}/jobs/tributary-gdelt"]
    after = client.get_job(name=f"{PARENT}/jobs/tributary-gdelt")
    assert after.schedule == "0 * * * *"
    assert after.http_target.uri == before.http_target.uri
    assert after.schedule_time == datetime(2024, 1, 1, 1, tzinfo=UTC)
    assert run_sync(client, {"gdelt": {"cron": "0 * * * *"}})[0].empty


def test_other_changes_are_detected(client) -> None:
    run_sync(client)
    tz_plan = plan(
        desired_jobs(
            SOURCES,
            project=PROJECT,
            region=REGION,
            api_url="http://127.0.0.1:9999",
            service_account=SA,
            overrides={"fred": {"time_zone": "Europe/Paris"}},
        ),
        live_jobs(client, PROJECT, REGION),
    )
    changes = {u.name.rsplit("/", 1)[-1]: u.paths for u in tz_plan.update}
    assert changes == {"tributary-fred": ("time_zone", "http_target"), "tributary-gdelt": ("http_target",)}
    no_sa, _ = run_sync(client, service_account="")
    assert {u.paths for u in no_sa.update} == {("http_target",)}


def test_paused_override_pauses_and_resumes(client) -> None:
    _, result = run_sync(client, {"fred": {"paused": True}})
    assert result.paused == [f"{PARENT}/jobs/tributary-fred"]
    fred = client.get_job(name=f"{PARENT}/jobs/tributary-fred")
    assert fred.state == scheduler_v1.Job.State.PAUSED
    assert run_sync(client, {"fred": {"paused": True}})[0].empty
    the_plan, result = run_sync(client)
    assert [(u.paths, u.resume) for u in the_plan.update] == [((), True)]
    assert result.resumed == [f"{PARENT}/jobs/tributary-fred"]
    assert client.get_job(name=f"{PARENT}/jobs/tributary-fred").state == scheduler_v1.Job.State.ENABLED


def test_prune_deletes_only_stale_tributary_jobs(client) -> None:
    run_sync(client)
    for job_id in ("tributary-retired", "someone-elses-job"):
        client.create_job(
            parent=PARENT,
            job=scheduler_v1.Job(
                name=f"{PARENT}/jobs/{job_id}", schedule="0 0 * * *", http_target={"uri": "http://127.0.0.1:1/x"}
            ),
        )
    the_plan, result = run_sync(client)
    assert [job.name.rsplit("/", 1)[-1] for job in the_plan.delete] == ["tributary-retired"]
    assert result.kept == [f"{PARENT}/jobs/tributary-retired"] and not result.deleted
    assert "tributary-retired" in names(client)

    _, result = run_sync(client, prune=True)
    assert result.deleted == [f"{PARENT}/jobs/tributary-retired"]
    assert names(client) == ["someone-elses-job", "tributary-fred", "tributary-gdelt"]


def test_dry_run_changes_nothing(client) -> None:
    the_plan, result = run_sync(client, dry_run=True)
    assert len(the_plan.create) == 2 and len(result.created) == 2 and result.dry_run
    assert names(client) == []
    run_sync(client)
    client.create_job(
        parent=PARENT,
        job=scheduler_v1.Job(
            name=f"{PARENT}/jobs/tributary-retired", schedule="0 0 * * *", http_target={"uri": "http://127.0.0.1:1/"}
        ),
    )
    _, result = run_sync(client, {"gdelt": {"cron": "5 * * * *", "paused": True}}, prune=True, dry_run=True)
    assert result.updated and result.paused and result.deleted
    gdelt = client.get_job(name=f"{PARENT}/jobs/tributary-gdelt")
    assert gdelt.schedule == "*/15 * * * *" and gdelt.state == scheduler_v1.Job.State.ENABLED
    assert "tributary-retired" in names(client)


def test_apply_without_plan_changes_is_a_no_op(client) -> None:
    result = apply(plan([], []), client, prune=True)
    assert not result.changed


def test_load_overrides(tmp_path: Path) -> None:
    flat = tmp_path / "schedules.toml"
    flat.write_text('[gdelt]\ncron = "*/5 * * * *"\n\n[fred]\npaused = true\ntime_zone = "UTC"\n')
    assert load_overrides(flat) == {
        "gdelt": {"cron": "*/5 * * * *"},
        "fred": {"paused": True, "time_zone": "UTC"},
    }
    nested = tmp_path / "nested.toml"
    nested.write_text('[sources.gdelt]\ncron = "0 * * * *"\n')
    assert load_overrides(nested) == {"gdelt": {"cron": "0 * * * *"}}
    bad = tmp_path / "bad.toml"
    bad.write_text('[gdelt]\npaused = "yes"\n')
    with pytest.raises(ValueError, match="paused must be a bool"):
        load_overrides(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[gdelt\n")
    with pytest.raises(ValueError, match=r"broken\.toml"):
        load_overrides(broken)


# ----------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_env(emu, monkeypatch) -> Iterator[None]:
    monkeypatch.setenv("CLOUD_SCHEDULER_EMULATOR_HOST", emu.address)
    monkeypatch.setenv("TRIBUTARY_PROJECT", PROJECT)
    monkeypatch.setenv("TRIBUTARY_REGION", REGION)
    monkeypatch.setenv("TRIBUTARY_INVOKER_SERVICE_ACCOUNT", SA)
    monkeypatch.delenv("TRIBUTARY_API_URL", raising=False)
    monkeypatch.delenv("TRIBUTARY_SCHEDULE_OVERRIDES", raising=False)
    monkeypatch.setattr(schedule_cli, "_load_sources", lambda: SOURCES)
    reset_settings()
    reset_clients()
    yield
    reset_clients()
    reset_settings()


def test_cli_diff_sync_and_prune(cli_env, client, tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(schedule_cli.schedule_app, ["diff"])
    assert out.exit_code == 0, out.output
    assert "create" in out.output and "tributary-gdelt" in out.output

    out = runner.invoke(schedule_cli.schedule_app, ["sync", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "Dry run: would 3 create" in out.output, "two sources and the reaper"
    assert names(client) == []

    out = runner.invoke(schedule_cli.schedule_app, ["sync", "--api-url", "http://127.0.0.1:8090"])
    assert out.exit_code == 0, out.output
    assert names(client) == ["tributary-fred", "tributary-gdelt", "tributary-reaper"]
    assert client.get_job(name=f"{PARENT}/jobs/tributary-fred").http_target.uri == "http://127.0.0.1:8090/v1/jobs"
    reaper = client.get_job(name=f"{PARENT}/jobs/tributary-reaper")
    assert reaper.http_target.uri == "http://127.0.0.1:8090/v1/reaper:run"

    overrides = tmp_path / "o.toml"
    overrides.write_text('[gdelt]\ncron = "0 * * * *"\n')
    out = runner.invoke(
        schedule_cli.schedule_app, ["diff", "--api-url", "http://127.0.0.1:8090", "--config", str(overrides)]
    )
    assert out.exit_code == 0, out.output
    assert "update" in out.output and "0 * * * *" in out.output

    out = runner.invoke(schedule_cli.schedule_app, ["sync", "--prune"])  # back to the default API URL
    assert out.exit_code == 0, out.output
    assert "did 0 create, 3 update" in out.output
    out = runner.invoke(schedule_cli.schedule_app, ["diff"])
    assert "In sync" in out.output


def test_sync_schedules_uses_settings_and_the_configured_client(cli_env, client, tmp_path: Path, monkeypatch) -> None:
    overrides = tmp_path / "o.toml"
    overrides.write_text("[fred]\npaused = true\n")
    monkeypatch.setenv("TRIBUTARY_SCHEDULE_OVERRIDES", str(overrides))
    monkeypatch.setenv("TRIBUTARY_API_URL", "http://127.0.0.1:8099")
    the_plan, result = sync_schedules(sources=SOURCES)
    created = sorted(j.name.rsplit("/", 1)[-1] for j in the_plan.create)
    assert created == ["tributary-fred", "tributary-gdelt", "tributary-reaper"], "two sources and the reaper"
    assert result.paused == [f"{PARENT}/jobs/tributary-fred"]
    fred = client.get_job(name=f"{PARENT}/jobs/tributary-fred")
    assert fred.http_target.uri == "http://127.0.0.1:8099/v1/jobs"
    assert fred.http_target.oidc_token.service_account_email == SA
    assert sync_schedules(sources=SOURCES)[0].empty


def test_missing_sources_module_is_a_clear_error(capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "common.sources", types.ModuleType("common.sources"))
    with pytest.raises(typer.Exit) as info:
        schedule_cli._load_sources()
    assert info.value.exit_code == 2
    assert "common.sources.all_sources() is not available" in capsys.readouterr().err


def test_the_registered_sources_fit_the_contract() -> None:
    try:
        sources = schedule_cli._load_sources()
    except typer.Exit:  # pragma: no cover - before common.sources exists
        pytest.skip("common.sources.all_sources() is not available yet")
    jobs = desired_jobs(sources, project=PROJECT, region=REGION, api_url=API, service_account=SA)
    scheduled = [s.name for s in sources if getattr(s, "schedule", None) is not None]
    assert sorted(job.name.rsplit("/", 1)[-1] for job in jobs) == sorted(f"tributary-{n}" for n in scheduled)
