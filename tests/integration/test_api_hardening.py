"""What an independent attack on the local stack broke, on the real emulators: bad input, backfill bounds,
repeated sources, outages, and answers that were not JSON (RELIABILITY.md, "Hardening: API input, bounds and
outages")."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from functions_framework import create_app

from common.gcp import clients
from common.gcp.firestore import get_job
from common.gcp.tasks import ensure_queue, queue_path
from common.runtime.api.backfills import MAX_UNCONFIRMED_SECONDS
from common.settings import reset_settings
from common.sources import all_sources

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
TODAY = datetime.now(UTC).date()


@pytest.fixture
def api(gcp: str, tasks_emulator) -> object:
    for source in all_sources():
        ensure_queue(source)
    return create_app("api", str(FUNCTIONS / "api.py")).test_client()


def closed_port() -> str:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def tasks_of(source: str) -> list:
    return list(clients.tasks().list_tasks(parent=queue_path(source)))


def error_of(r, status: int, code: str, field: str | None = None) -> dict:
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.content_type == "application/json"
    error = r.get_json()["error"]
    assert error["code"] == code, error
    if field is not None:
        assert error.get("field") == field, error
    return error


# ---- item 3: every parameter is parsed by a model --------------------------------------------------
@pytest.mark.parametrize(
    ("path", "code", "field"),
    [
        ("/v1/jobs?limit=%C2%B2", "invalid_limit", "limit"),  # "²": str.isdigit() is true, int() raised
        ("/v1/jobs?limit=%D9%A3", "invalid_limit", "limit"),  # Arabic-Indic three
        ("/v1/jobs?limit=-1", "invalid_limit", "limit"),
        ("/v1/jobs?limit=1.0", "invalid_limit", "limit"),
        ("/v1/jobs?limit=501", "invalid_limit", "limit"),
        ("/v1/jobs?limit=99999999999999999999999", "invalid_limit", "limit"),
        ("/v1/jobs?batch_id=", "invalid_parameter", "batch_id"),
    ],
)
def test_bad_query_values_answer_400_json(api, path: str, code: str, field: str) -> None:
    error_of(api.get(path), 400, code, field)


def test_reaper_dry_run_takes_a_boolean_only(api) -> None:
    error_of(api.post("/v1/reaper:run?dry_run=2"), 400, "invalid_parameter", "dry_run")
    assert api.post("/v1/reaper:run?dry_run=true").status_code == 200


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("0001-01-01", "2024-01-01", "start"),
        ("2024-01-01", "9999-12-31", "end"),  # the day after 9999-12-31 raised OverflowError
        ("0001-01-01T00:00:00+05:00", "2024-01-01", "start"),
        ("2024-01-0²", "2024-01-02", "start"),
        ("2024-01-01", "tomorrow", "end"),
        ("2024-02-30", "2024-03-01", "start"),
    ],
)
def test_extreme_or_malformed_backfill_dates_answer_400(api, start: str, end: str, field: str) -> None:
    r = api.post("/v1/backfills", json={"source": "reliefweb", "start": start, "end": end})
    error_of(r, 400, "invalid_range", field)


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1969-12-31", "2024-1-5", "²024-01-05", 20240105])
def test_extreme_or_malformed_run_daily_dates_answer_400(api, day) -> None:
    error_of(api.post("/api/v1/ingest/run-daily", json={"date": day}), 400, "invalid_date", "date")


def test_a_future_run_daily_date_is_refused(api) -> None:
    later = (TODAY + timedelta(days=2)).isoformat()
    error_of(api.post("/api/v1/ingest/run-daily", json={"date": later}), 400, "invalid_date", "date")


def test_an_integer_is_not_a_boolean(api) -> None:
    r = api.post("/v1/jobs", json={"source": "ofac", "params": {"force": 1}})
    error_of(r, 400, "invalid_params", "params.force")
    r = api.post(
        "/v1/backfills", json={"source": "reliefweb", "start": "2024-01-01", "end": "2024-01-02", "dry_run": 1}
    )
    error_of(r, 400, "invalid_request", "dry_run")


def test_a_unicode_digit_in_a_cloud_tasks_header_answers_400_json(gcp: str) -> None:
    client = create_app("ingest", str(FUNCTIONS / "ingest.py")).test_client()
    body = {"job_id": "gdelt-x", "source": "gdelt", "params": {}}
    r = client.post("/gdelt", json=body, headers={"X-CloudTasks-TaskRetryCount": "²"})
    error_of(r, 400, "invalid_task")
    assert "x-cloudtasks-taskretrycount" in r.get_json()["error"]["message"]


# ---- item 4: backfills bounded by the source's data, estimated, confirmed ---------------------------
def test_a_backfill_before_the_source_s_data_is_refused_naming_its_first_day(api) -> None:
    r = api.post("/v1/backfills", json={"source": "reliefweb", "start": "1925-01-01", "end": "2024-01-01"})
    assert "1996-01-01" in error_of(r, 400, "invalid_range", "start")["message"]
    r = api.post("/v1/backfills", json={"source": "gdelt", "start": "2015-02-18", "end": "2015-02-19"})
    assert "2015-02-18T23:00:00+00:00" in error_of(r, 400, "invalid_range", "start")["message"]


def test_a_future_backfill_is_refused(api) -> None:
    soon, later = (TODAY + timedelta(days=1)).isoformat(), (TODAY + timedelta(days=30)).isoformat()
    r = api.post("/v1/backfills", json={"source": "reliefweb", "start": soon, "end": later})
    assert "future" in error_of(r, 400, "invalid_range", "start")["message"]
    r = api.post("/v1/backfills", json={"source": "reliefweb", "start": "2024-01-01", "end": later})
    assert "after today" in error_of(r, 400, "invalid_range", "end")["message"]
    assert api.get("/v1/jobs").get_json()["jobs"] == []


def test_a_dry_run_answers_the_plan_and_creates_nothing(api) -> None:
    body = {"source": "reliefweb", "start": "2020-01-01", "end": "2024-12-31", "dry_run": True}
    r = api.post("/v1/backfills", json=body)
    assert r.status_code == 200, r.get_data(as_text=True)
    plan = r.get_json()
    assert plan["dry_run"] is True and plan["jobs"] == 261  # 7-day windows over five years
    assert plan["max_dispatches_per_second"] == 0.01 and plan["max_concurrent_dispatches"] == 1
    assert plan["estimated_seconds"] == pytest.approx(26_100)
    assert plan["confirmation_required"] is True
    assert api.get("/v1/jobs").get_json()["jobs"] == [] and tasks_of("reliefweb") == []


def test_a_large_backfill_needs_confirmation_and_a_small_one_does_not(api) -> None:
    big = {"source": "reliefweb", "start": "2020-01-01", "end": "2020-12-31"}
    error = error_of(api.post("/v1/backfills", json=big), 409, "confirmation_required", "confirm")
    assert "53 jobs" in error["message"] and "dry_run" in error["message"]
    assert api.get("/v1/jobs").get_json()["jobs"] == []
    r = api.post("/v1/backfills", json=big | {"confirm": True})
    assert r.status_code == 202 and r.get_json()["total"] == 53
    assert len(tasks_of("reliefweb")) == 53
    small = {"source": "reliefweb", "start": "2021-01-01", "end": "2021-01-14"}
    assert MAX_UNCONFIRMED_SECONDS > 2 / 0.01
    r = api.post("/v1/backfills", json=small)
    assert r.status_code == 202 and r.get_json()["total"] == 2


# ---- item 5: a repeated source counts once -----------------------------------------------------------
def test_run_daily_with_a_repeated_source_is_a_batch_of_distinct_jobs(api) -> None:
    r = api.post("/api/v1/ingest/run-daily", json={"date": TODAY.isoformat(), "sources": ["gdelt", "gdelt"]})
    assert r.status_code == 202, r.get_data(as_text=True)
    batch = r.get_json()
    assert batch["total"] == 1 and len(batch["jobs"]) == 1
    once = api.post("/api/v1/ingest/run-daily", json={"date": TODAY.isoformat(), "sources": ["gdelt"]}).get_json()
    assert once["job_id"] == batch["job_id"]  # the same trigger: the same batch


# ---- item 7: outages ---------------------------------------------------------------------------------
def test_a_job_left_queued_by_a_tasks_outage_is_enqueued_by_the_client_s_retry(
    api, tasks_emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"source": "gdelt", "params": {"slot": "20240115120000"}}
    monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", closed_port())
    reset_settings()
    clients.reset_clients()
    r = api.post("/v1/jobs", json=body)
    error_of(r, 503, "queue_unavailable")
    assert r.headers["Retry-After"] == "10"
    job_id = r.get_json()["error"]["message"].split()[1]
    assert get_job(job_id).status == "queued"
    monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", tasks_emulator.address)
    reset_settings()
    clients.reset_clients()
    again = api.post("/v1/jobs", json=body)
    assert again.status_code == 202 and again.get_json()["job_id"] == job_id
    (task,) = tasks_of("gdelt")
    assert task.name.endswith(f"/tasks/{job_id}")


def test_reads_give_up_on_an_unreachable_firestore_within_the_read_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", closed_port())
    monkeypatch.setenv("TRIBUTARY_CALL_DEADLINE", "30")
    monkeypatch.setenv("TRIBUTARY_API_READ_DEADLINE", "1")
    reset_settings()
    clients.reset_clients()
    client = create_app("api", str(FUNCTIONS / "api.py")).test_client()
    for path in ("/v1/jobs/job-1", "/v1/jobs", "/api/v1/ingest/jobs/run-daily-x"):
        started = time.monotonic()
        r = client.get(path)
        assert time.monotonic() - started < 6, path
        error_of(r, 503, "backend_unavailable")
        assert r.headers["Retry-After"] == "10"


# ---- item 8: every answer is JSON --------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/v1/jobs//", "/v1//jobs", "/v1/jobs/a%0Ab", "/v1/jobs/a%0Db", "/favicon.ico", "/robots.txt"]
)
def test_routing_edge_cases_answer_json_never_html_or_a_redirect(api, path: str) -> None:
    r = api.get(path)
    assert r.status_code == 404 and r.content_type == "application/json", (r.status_code, r.data[:200])
    assert "Location" not in r.headers
    assert r.get_json()["error"]["code"] in ("not_found", "job_not_found")


def test_a_trailing_slash_still_routes(api) -> None:
    assert api.get("/v1/jobs/").status_code == 200
