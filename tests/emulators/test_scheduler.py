"""The Cloud Scheduler emulator, driven through the stock google-cloud-scheduler client."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import pytest
from google.api_core import exceptions as gexc
from google.cloud import scheduler_v1
from google.protobuf import field_mask_pb2

from common.gcp.clients import scheduler_client_for
from common.local.emulators.oidc import LocalSigner
from common.local.emulators.scheduler import (
    FrozenClock,
    SchedulerEmulator,
    SystemClock,
    backoff,
    next_fire_time,
    rfc3339,
)

PARENT = "projects/demo/locations/us-central1"
START = datetime(2024, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------- fixtures


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Target:
    """A local HTTP server that records requests and answers with scripted status codes."""

    url: str
    requests: list[Seen] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)
    default_status: int = 200

    def header(self, index: int, name: str) -> str | None:
        lowered = {k.lower(): v for k, v in self.requests[index].headers.items()}
        return lowered.get(name.lower())


@pytest.fixture
def target() -> Iterator[Target]:
    box: dict[str, Target] = {}

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            tgt = box["t"]
            tgt.requests.append(Seen(self.command, self.path, dict(self.headers.items()), body))
            status = tgt.statuses.popleft() if tgt.statuses else tgt.default_status
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    box["t"] = Target(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield box["t"]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def signer() -> LocalSigner:
    return LocalSigner()


@pytest.fixture
def emu(signer: LocalSigner) -> Iterator[SchedulerEmulator]:
    with SchedulerEmulator(clock=FrozenClock(START), signer=signer) as emulator:
        yield emulator


@pytest.fixture
def client(emu: SchedulerEmulator) -> Iterator[scheduler_v1.CloudSchedulerClient]:
    c = scheduler_client_for(emu.address)
    yield c
    c.transport.close()


def http_job(job_id: str, uri: str, schedule: str = "* * * * *", **extra: object) -> scheduler_v1.Job:
    target = {"uri": uri, **extra.pop("http", {})}  # type: ignore[dict-item]
    return scheduler_v1.Job(name=f"{PARENT}/jobs/{job_id}", schedule=schedule, http_target=target, **extra)


def ts(value: datetime) -> datetime:
    """proto-plus returns DatetimeWithNanoseconds; compare as plain UTC datetimes."""
    return datetime.fromtimestamp(value.timestamp(), UTC)


# --------------------------------------------------------------------------------------------- CRUD


def test_create_get_list_delete_fill_output_fields(client, target) -> None:
    created = client.create_job(parent=PARENT, job=http_job("a", target.url, description="first"))
    assert created.name == f"{PARENT}/jobs/a"
    assert created.state == scheduler_v1.Job.State.ENABLED
    assert ts(created.user_update_time) == START
    assert ts(created.schedule_time) == START + timedelta(minutes=1)
    assert created.http_target.http_method == scheduler_v1.HttpMethod.POST  # unspecified means POST
    # Cloud Scheduler stores the User-Agent it sends, and fills the attempt deadline and retry defaults.
    assert dict(created.http_target.headers) == {"User-Agent": "Google-Cloud-Scheduler"}
    assert created.attempt_deadline == timedelta(minutes=3)
    assert created.retry_config.retry_count == 0
    assert created.retry_config.min_backoff_duration == timedelta(seconds=5)
    assert created.retry_config.max_backoff_duration == timedelta(hours=1)
    assert created.retry_config.max_doublings == 5
    assert "last_attempt_time" not in created and "status" not in created

    assert client.get_job(name=created.name) == created
    assert [j.name for j in client.list_jobs(parent=PARENT)] == [created.name]
    client.delete_job(name=created.name)
    with pytest.raises(gexc.NotFound, match="Job not found"):
        client.get_job(name=created.name)
    with pytest.raises(gexc.NotFound):
        client.delete_job(name=created.name)


def test_create_without_a_name_generates_one(client, target) -> None:
    job = scheduler_v1.Job(schedule="0 * * * *", http_target={"uri": target.url})
    created = client.create_job(parent=PARENT, job=job)
    assert re.fullmatch(rf"{PARENT}/jobs/[0-9a-f]{{20}}", created.name)


def test_body_without_content_type_gets_the_octet_stream_default(client, target) -> None:
    created = client.create_job(parent=PARENT, job=http_job("b", target.url, http={"body": b"x"}))
    assert created.http_target.headers["Content-Type"] == "application/octet-stream"


def test_update_honours_the_mask(client, target, emu) -> None:
    client.create_job(parent=PARENT, job=http_job("u", target.url, description="old"))
    emu.advance(30)
    change = http_job("u", "http://127.0.0.1:1/elsewhere", schedule="0 9 * * *", description="new")
    updated = client.update_job(job=change, update_mask=field_mask_pb2.FieldMask(paths=["schedule"]))
    assert updated.schedule == "0 9 * * *"
    assert updated.description == "old" and updated.http_target.uri == target.url
    assert ts(updated.schedule_time) == datetime(2024, 1, 1, 9, tzinfo=UTC)
    assert ts(updated.user_update_time) == START + timedelta(seconds=30)

    nested = client.update_job(
        job=http_job("u", target.url, http={"headers": {"X-A": "1"}}),
        update_mask=field_mask_pb2.FieldMask(paths=["http_target.headers"]),
    )
    assert dict(nested.http_target.headers) == {"X-A": "1", "User-Agent": "Google-Cloud-Scheduler"}
    # output-only paths are ignored, as the API reference says
    same = client.update_job(job=scheduler_v1.Job(name=updated.name, state=2), update_mask={"paths": ["state"]})
    assert same.state == scheduler_v1.Job.State.ENABLED
    # no mask: every populated field of the request is applied (AIP-134)
    nomask = client.update_job(job=scheduler_v1.Job(name=updated.name, time_zone="Asia/Tokyo"))
    assert nomask.time_zone == "Asia/Tokyo" and nomask.schedule == "0 9 * * *"
    assert ts(nomask.schedule_time) == datetime(2024, 1, 2, 0, tzinfo=UTC)  # 09:00 in Tokyo


def test_update_errors(client, target) -> None:
    client.create_job(parent=PARENT, job=http_job("e", target.url))
    with pytest.raises(gexc.InvalidArgument, match="Invalid mask for Job: timeZone"):
        client.update_job(job=http_job("e", target.url), update_mask={"paths": ["timeZone"]})
    with pytest.raises(gexc.NotFound):
        client.update_job(job=http_job("missing", target.url), update_mask={"paths": ["schedule"]})
    with pytest.raises(gexc.InvalidArgument, match="Schedule or time zone is invalid"):
        client.update_job(job=http_job("e", target.url, schedule="61 * * * *"), update_mask={"paths": ["schedule"]})
    assert client.get_job(name=f"{PARENT}/jobs/e").schedule == "* * * * *"  # a failed update changes nothing


def test_pause_and_resume(client, target, emu) -> None:
    name = client.create_job(parent=PARENT, job=http_job("p", target.url)).name
    paused = client.pause_job(name=name)
    assert paused.state == scheduler_v1.Job.State.PAUSED
    assert "schedule_time" not in paused
    with pytest.raises(gexc.FailedPrecondition):
        client.pause_job(name=name)
    # an update keeps the job paused
    kept = client.update_job(job=http_job("p", target.url, "*/5 * * * *"), update_mask={"paths": ["schedule"]})
    assert kept.state == scheduler_v1.Job.State.PAUSED and "schedule_time" not in kept
    client.update_job(job=http_job("p", target.url), update_mask={"paths": ["schedule"]})
    assert emu.advance(600) == []
    assert target.requests == []
    resumed = client.resume_job(name=name)
    assert resumed.state == scheduler_v1.Job.State.ENABLED
    # the next time is recomputed from now: the ten missed minutes are not replayed
    assert ts(resumed.schedule_time) == START + timedelta(minutes=11)
    with pytest.raises(gexc.FailedPrecondition):
        client.resume_job(name=name)
    assert len(emu.advance(60)) == 1


def test_list_pages(client, target) -> None:
    for i in range(5):
        client.create_job(parent=PARENT, job=http_job(f"job-{i}", target.url))
    other = "projects/demo/locations/europe-west1"
    client.create_job(
        parent=other,
        job=scheduler_v1.Job(name=f"{other}/jobs/x", schedule="* * * * *", http_target={"uri": target.url}),
    )
    pager = client.list_jobs(request={"parent": PARENT, "page_size": 2})
    pages = [[job.name.rsplit("/", 1)[1] for job in page.jobs] for page in pager.pages]
    assert pages == [["job-0", "job-1"], ["job-2", "job-3"], ["job-4"]]
    assert len(list(client.list_jobs(parent=PARENT))) == 5
    with pytest.raises(gexc.InvalidArgument, match="page_token"):
        client.list_jobs(request={"parent": PARENT, "page_token": "garbage"})


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (
            scheduler_v1.Job(name=f"{PARENT}/jobs/bad name", schedule="* * * * *", http_target={"uri": "http://x"}),
            "Invalid job name",
        ),
        (
            scheduler_v1.Job(name="projects/demo/jobs/x", schedule="* * * * *", http_target={"uri": "http://x"}),
            "Invalid job name",
        ),
        (
            scheduler_v1.Job(name=f"{PARENT}/jobs/x", schedule="*/5 * * *", http_target={"uri": "http://x"}),
            "Schedule or time zone is invalid",
        ),
        (
            scheduler_v1.Job(name=f"{PARENT}/jobs/x", schedule="every 5 minutes", http_target={"uri": "http://x"}),
            "Schedule or time zone is invalid",
        ),
        (
            scheduler_v1.Job(name=f"{PARENT}/jobs/x", schedule="0 0 31 2 *", http_target={"uri": "http://x"}),
            "Schedule or time zone is invalid",
        ),
        (
            scheduler_v1.Job(
                name=f"{PARENT}/jobs/x", schedule="* * * * *", time_zone="Mars/Olympus", http_target={"uri": "http://x"}
            ),
            "Schedule or time zone is invalid",
        ),
        (scheduler_v1.Job(name=f"{PARENT}/jobs/x", http_target={"uri": "http://x"}), "schedule is required"),
        (scheduler_v1.Job(name=f"{PARENT}/jobs/x", schedule="* * * * *"), "must have a target"),
        (
            scheduler_v1.Job(name=f"{PARENT}/jobs/x", schedule="* * * * *", http_target={"uri": "ftp://x"}),
            "http:// or https://",
        ),
        (
            scheduler_v1.Job(
                name=f"{PARENT}/jobs/x",
                schedule="* * * * *",
                http_target={"uri": "http://x", "http_method": "GET", "body": b"1"},
            ),
            "body is allowed",
        ),
        (
            scheduler_v1.Job(
                name=f"{PARENT}/jobs/x",
                schedule="* * * * *",
                http_target={"uri": "http://x"},
                retry_config={"retry_count": 6},
            ),
            "retry_count",
        ),
        (
            scheduler_v1.Job(
                name=f"{PARENT}/jobs/x",
                schedule="* * * * *",
                http_target={"uri": "http://x"},
                attempt_deadline=timedelta(seconds=5),
            ),
            "attempt_deadline",
        ),
        (
            scheduler_v1.Job(
                name=f"{PARENT}/jobs/x",
                schedule="* * * * *",
                http_target={"uri": "http://x", "oidc_token": {"audience": "a"}},
            ),
            "service_account_email",
        ),
        (
            scheduler_v1.Job(
                name="projects/demo/locations/elsewhere/jobs/x", schedule="* * * * *", http_target={"uri": "http://x"}
            ),
            "not under parent",
        ),
    ],
)
def test_invalid_jobs_are_invalid_argument(client, job, message) -> None:
    with pytest.raises(gexc.InvalidArgument, match=message):
        client.create_job(parent=PARENT, job=job)


def test_other_error_codes(client, target) -> None:
    client.create_job(parent=PARENT, job=http_job("dup", target.url))
    with pytest.raises(gexc.AlreadyExists, match="already exists"):
        client.create_job(parent=PARENT, job=http_job("dup", target.url))
    with pytest.raises(gexc.InvalidArgument, match="Invalid parent"):
        client.list_jobs(parent="projects/demo")
    with pytest.raises(gexc.InvalidArgument, match="Invalid job name"):
        client.get_job(name="dup")
    with pytest.raises(gexc.InvalidArgument, match="Invalid resource name"):
        client.list_locations({"name": "projects/demo/locations"})


def test_concurrent_clients(client, target, emu) -> None:
    errors: list[BaseException] = []

    def create(worker: int) -> None:
        try:
            for i in range(10):
                client.create_job(parent=PARENT, job=http_job(f"w{worker}-{i}", target.url, "0 * * * *"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    records = emu.advance(3600)
    for thread in threads:
        thread.join(timeout=10)
    assert not errors
    assert len(list(client.list_jobs(parent=PARENT))) == 80
    assert all(r.status == 200 for r in records)


def test_time_zone_utc_spellings(client, target) -> None:
    for i, tz in enumerate(["", "utc", "UTC", "Etc/UTC"]):
        job = client.create_job(parent=PARENT, job=http_job(f"tz{i}", target.url, "0 1 * * *", time_zone=tz))
        assert ts(job.schedule_time) == datetime(2024, 1, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------------------------------------- firing


def test_every_minute_job_fires_three_times_in_three_minutes(client, target, emu) -> None:
    body = json.dumps({"source": "gdelt", "params": {}}).encode()
    job = http_job(
        "every-minute",
        target.url,
        http={"body": body, "headers": {"Content-Type": "application/json", "X-Extra": "yes"}},
    )
    client.create_job(parent=PARENT, job=job)
    records = emu.advance(180)
    assert [r.schedule_time for r in records] == [START + timedelta(minutes=m) for m in (1, 2, 3)]
    assert [r.status for r in records] == [200, 200, 200]
    assert all(r.job == job.name and r.kind == "schedule" and r.attempt == 1 for r in records)
    assert len(target.requests) == 3
    for i, seen in enumerate(target.requests):
        assert seen.method == "POST" and seen.path == "/hook" and seen.body == body
        assert target.header(i, "Content-Type") == "application/json"
        assert target.header(i, "X-Extra") == "yes"
        assert target.header(i, "User-Agent") == "Google-Cloud-Scheduler"
        assert target.header(i, "X-CloudScheduler") == "true"
        assert target.header(i, "X-CloudScheduler-JobName") == "every-minute"
        assert target.header(i, "X-CloudScheduler-ScheduleTime") == f"2024-01-01T00:0{i + 1}:00Z"
        assert target.header(i, "Authorization") is None
    after = client.get_job(name=job.name)
    assert ts(after.last_attempt_time) == START + timedelta(minutes=3)
    assert after.status.code == 0
    assert ts(after.schedule_time) == START + timedelta(minutes=4)
    assert emu.now() == START + timedelta(minutes=3)


def test_tokyo_nine_oclock_fires_at_midnight_utc(client, target, emu) -> None:
    created = client.create_job(parent=PARENT, job=http_job("tokyo", target.url, "0 9 * * *", time_zone="Asia/Tokyo"))
    assert ts(created.schedule_time) == datetime(2024, 1, 2, 0, 0, tzinfo=UTC)
    assert emu.advance(23 * 3600 + 59 * 60) == []
    records = emu.advance(60)
    assert [r.schedule_time for r in records] == [datetime(2024, 1, 2, 0, 0, tzinfo=UTC)]
    # the header carries the job's own offset (see docs/scheduler-emulator.md, Quirks)
    assert target.header(0, "X-CloudScheduler-ScheduleTime") == "2024-01-02T09:00:00+09:00"


def test_paused_job_does_not_fire(client, target, emu) -> None:
    name = client.create_job(parent=PARENT, job=http_job("quiet", target.url)).name
    client.pause_job(name=name)
    assert emu.advance(3600) == []
    assert target.requests == []


def test_run_job_fires_immediately(client, target, emu) -> None:
    name = client.create_job(parent=PARENT, job=http_job("now", target.url, "0 0 1 1 *")).name
    ran = client.run_job(name=name)
    assert len(target.requests) == 1
    assert target.header(0, "X-CloudScheduler-ScheduleTime") == "2024-01-01T00:00:00Z"
    assert ts(ran.last_attempt_time) == START
    assert ran.status.code == 0
    assert [(r.kind, r.status) for r in emu.history] == [("run", 200)]
    assert ts(ran.schedule_time) == datetime(2025, 1, 1, tzinfo=UTC)  # the schedule is untouched


def test_failing_target_is_retried_per_retry_config(client, target, emu) -> None:
    target.default_status = 500
    retry = {
        "retry_count": 3,
        "min_backoff_duration": timedelta(seconds=10),
        "max_backoff_duration": timedelta(seconds=40),
        "max_doublings": 1,
    }
    name = client.create_job(parent=PARENT, job=http_job("flaky", target.url, "0 * * * *", retry_config=retry)).name
    records = emu.advance(3600 + 120)
    first = datetime(2024, 1, 1, 1, tzinfo=UTC)
    # backoff: 10 s, then doubled once (20 s), then linear by 2^1 * 10 s (40 s, the cap)
    assert [r.fired_at for r in records] == [first + timedelta(seconds=s) for s in (0, 10, 30, 70)]
    assert [(r.attempt, r.kind, r.status) for r in records] == [
        (1, "schedule", 500),
        (2, "retry", 500),
        (3, "retry", 500),
        (4, "retry", 500),
    ]
    assert {target.header(i, "X-CloudScheduler-ScheduleTime") for i in range(4)} == {"2024-01-01T01:00:00Z"}
    job = client.get_job(name=name)
    assert job.status.code == 13  # INTERNAL for an HTTP 500
    assert "500" in job.status.message
    assert ts(job.last_attempt_time) == first + timedelta(seconds=70)
    assert ts(job.schedule_time) == datetime(2024, 1, 1, 2, tzinfo=UTC)


def test_retries_stop_after_success_and_at_the_next_scheduled_time(client, target, emu) -> None:
    target.statuses.extend([503, 503, 200])
    retry = {"retry_count": 5, "min_backoff_duration": timedelta(seconds=5), "max_doublings": 2}
    client.create_job(parent=PARENT, job=http_job("heals", target.url, "0 * * * *", retry_config=retry))
    records = emu.advance(3600 + 120)
    assert [r.status for r in records] == [503, 503, 200]

    target.default_status = 500
    slow = {
        "retry_count": 5,
        "min_backoff_duration": timedelta(seconds=20),
        "max_backoff_duration": timedelta(seconds=20),
    }
    client.create_job(parent=PARENT, job=http_job("crowded", target.url, "* * * * *", retry_config=slow))
    crowded = [r for r in emu.advance(119) if r.job.endswith("/crowded")]
    # attempts at :00, :20 and :40; the next retry would reach the next minute, so it is dropped
    assert [(r.attempt, r.fired_at.second) for r in crowded] == [(1, 0), (2, 20), (3, 40)]
    job = client.get_job(name=f"{PARENT}/jobs/crowded")
    assert ts(job.schedule_time) == datetime(2024, 1, 1, 1, 4, tzinfo=UTC)


def test_unreachable_target_is_unavailable(client, emu) -> None:
    name = client.create_job(parent=PARENT, job=http_job("down", "http://127.0.0.1:9/nothing")).name
    (record,) = emu.advance(60)
    assert record.status is None and record.error and record.error.startswith("UNAVAILABLE")
    assert client.get_job(name=name).status.code == 14


def test_oidc_token_verifies_against_the_signer_keys(client, target, emu, signer) -> None:
    oidc = {"service_account_email": "invoker@demo.iam.gserviceaccount.com"}
    client.create_job(parent=PARENT, job=http_job("auth", target.url, http={"oidc_token": oidc}))
    explicit = {**oidc, "audience": "https://api.example"}
    client.create_job(parent=PARENT, job=http_job("auth2", target.url, http={"oidc_token": explicit}))
    emu.advance(60)
    assert len(target.requests) == 2
    key = jwt.PyJWK(signer.jwks()["keys"][0])
    by_job = {target.header(i, "X-CloudScheduler-JobName"): i for i in range(2)}
    for job_id, audience in (("auth", target.url), ("auth2", "https://api.example")):
        header = target.header(by_job[job_id], "Authorization")
        assert header and header.startswith("Bearer ")
        claims = jwt.decode(
            header.removeprefix("Bearer "),
            key=key,
            algorithms=["RS256"],
            audience=audience,
            issuer="https://accounts.google.com",
        )
        assert claims["email"] == "invoker@demo.iam.gserviceaccount.com"
        assert jwt.get_unverified_header(header.removeprefix("Bearer "))["kid"] == signer.kid


def test_pubsub_targets_are_stored_but_not_fired(client, emu) -> None:
    job = scheduler_v1.Job(
        name=f"{PARENT}/jobs/ps",
        schedule="* * * * *",
        pubsub_target={"topic_name": "projects/demo/topics/t", "data": b"hi"},
    )
    created = client.create_job(parent=PARENT, job=job)
    assert created.pubsub_target.topic_name == "projects/demo/topics/t"
    assert "attempt_deadline" not in created
    (record,) = emu.advance(60)
    assert record.dispatched is False and record.target == "pubsub_target"
    assert "last_attempt_time" not in client.get_job(name=job.name)


def test_fire_false_sends_nothing(signer, target) -> None:
    with SchedulerEmulator(clock=START, signer=signer, fire=False) as emulator:
        c = scheduler_client_for(emulator.address)
        c.create_job(parent=PARENT, job=http_job("dry", target.url))
        records = emulator.advance(120)
        c.run_job(name=f"{PARENT}/jobs/dry")
        c.transport.close()
    assert [r.dispatched for r in records] == [False, False]
    assert target.requests == []


def test_advance_rejects_going_back(emu) -> None:
    with pytest.raises(ValueError):
        emu.advance(-1)


# --------------------------------------------------------------------------------------- cron and DST


def test_spring_forward_gap_fires_once_at_the_end_of_the_gap() -> None:
    # 2024-03-10: New York clocks jump from 02:00 EST to 03:00 EDT; 02:30 does not exist that day.
    after = datetime(2024, 3, 9, 12, tzinfo=UTC)
    first = next_fire_time("30 2 * * *", "America/New_York", after)
    assert first == datetime(2024, 3, 10, 7, 0, tzinfo=UTC)  # 03:00 EDT, the end of the gap
    assert next_fire_time("30 2 * * *", "America/New_York", first) == datetime(2024, 3, 11, 6, 30, tzinfo=UTC)
    # every 30 minutes: 01:30 EST, then the gap's times collapse into 03:00 EDT, then 03:30 EDT
    times, t = [], datetime(2024, 3, 10, 6, 0, tzinfo=UTC)
    for _ in range(3):
        t = next_fire_time("*/30 * * * *", "America/New_York", t)
        times.append(t.strftime("%H:%M"))
    assert times == ["06:30", "07:00", "07:30"]


def test_fall_back_repeated_time_fires_once_at_its_first_occurrence() -> None:
    # 2024-11-03: 01:00-02:00 happens twice in New York (EDT, then EST).
    first = next_fire_time("30 1 * * *", "America/New_York", datetime(2024, 11, 2, 12, tzinfo=UTC))
    assert first == datetime(2024, 11, 3, 5, 30, tzinfo=UTC)  # 01:30 EDT
    assert next_fire_time("30 1 * * *", "America/New_York", first) == datetime(2024, 11, 4, 6, 30, tzinfo=UTC)


def test_dst_through_the_server(signer, target) -> None:
    with SchedulerEmulator(clock=datetime(2024, 3, 9, 12, tzinfo=UTC), signer=signer) as emulator:
        c = scheduler_client_for(emulator.address)
        c.create_job(parent=PARENT, job=http_job("ny", target.url, "30 2 * * *", time_zone="America/New_York"))
        records = emulator.advance(2 * 86400)
        c.transport.close()
    assert [r.schedule_time for r in records] == [
        datetime(2024, 3, 10, 7, 0, tzinfo=UTC),
        datetime(2024, 3, 11, 6, 30, tzinfo=UTC),
    ]
    assert [target.header(i, "X-CloudScheduler-ScheduleTime") for i in range(2)] == [
        "2024-03-10T03:00:00-04:00",
        "2024-03-11T02:30:00-04:00",
    ]


def test_day_of_month_and_day_of_week_are_ored() -> None:
    after = datetime(2024, 1, 1, 12, tzinfo=UTC)  # a Monday
    assert next_fire_time("0 0 1 * SAT", "UTC", after) == datetime(2024, 1, 6, tzinfo=UTC)
    assert next_fire_time("0 0 * * 7", "UTC", after) == datetime(2024, 1, 7, tzinfo=UTC)


def test_backoff_matches_the_documented_sequence() -> None:
    assert [backoff(n, 10, 300, 3) for n in range(1, 9)] == [10, 20, 40, 80, 160, 240, 300, 300]


def test_rfc3339() -> None:
    assert rfc3339(START) == "2024-01-01T00:00:00Z"
    assert rfc3339(START, "Asia/Kolkata") == "2024-01-01T05:30:00+05:30"


# ------------------------------------------------------------------------------ real clock, admin, CLI


def test_real_clock_fires_in_the_background(signer, target) -> None:
    """The ticker fires a due job by itself. The clock is put 0.4 s before a minute boundary; when creating the job
    took longer than that (a loaded machine), its first fire is a minute away, so it is created again."""
    clock = SystemClock()
    with SchedulerEmulator(clock=clock, signer=signer) as emulator:
        c = scheduler_client_for(emulator.address)
        for _ in range(5):  # bounded: each try takes what one create_job takes
            clock.advance(60 - (clock.time() % 60) - 0.4)  # 0.4 s before a minute boundary
            scheduled = ts(c.create_job(parent=PARENT, job=http_job("live", target.url)).schedule_time)
            if scheduled - clock.now() < timedelta(seconds=30):
                break  # created before that boundary: it is the first fire
            c.delete_job(name=f"{PARENT}/jobs/live")
        deadline = time.monotonic() + 15  # a bound, not a window: the fire is due within 0.4 s
        while not target.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        c.transport.close()
        started = time.monotonic()
    assert time.monotonic() - started < 5  # stop() is bounded
    assert len(target.requests) == 1
    assert target.header(0, "X-CloudScheduler-ScheduleTime") == rfc3339(scheduled)
    assert target.header(
        0,
        "X-CloudScheduler-ScheduleTime",
    ).endswith(":00Z")


def test_stop_is_bounded_while_a_target_hangs(signer) -> None:
    arrived, release = threading.Event(), threading.Event()

    class Hang(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrived.set()
            release.wait(timeout=10)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    emulator = SchedulerEmulator(clock=START, signer=signer)
    emulator.start()
    c = scheduler_client_for(emulator.address)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    c.create_job(parent=PARENT, job=http_job("hang", url, "0 0 1 1 *"))
    runner = threading.Thread(target=lambda: emulator.advance(366 * 86400), daemon=True)
    runner.start()
    assert arrived.wait(timeout=10), "the fire never reached the target"  # the request is in flight
    started = time.monotonic()
    emulator.stop()
    runner.join(timeout=5)
    assert time.monotonic() - started < 2
    assert not runner.is_alive()
    assert [r.error for r in emulator.history] == ["CANCELLED: the emulator stopped during the attempt"]
    release.set()
    c.transport.close()
    server.shutdown()
    server.server_close()


def test_admin_endpoint_advances_time(signer, target) -> None:
    with SchedulerEmulator(clock=START, signer=signer, admin_port=0) as emulator:
        assert emulator.admin_address
        base = f"http://{emulator.admin_address}"
        c = scheduler_client_for(emulator.address)
        c.create_job(parent=PARENT, job=http_job("admin", target.url))
        with httpx.Client(trust_env=False, timeout=10) as http:
            health = http.get(f"{base}/healthz").json()
            assert health == {"status": "ok", "now": "2024-01-01T00:00:00Z", "jobs": 1}
            answer = http.post(f"{base}/advance", json={"seconds": 120})
            assert answer.status_code == 200
            fired = answer.json()["fired"]
            assert [(f["job"], f["schedule_time"], f["status"]) for f in fired] == [
                (f"{PARENT}/jobs/admin", "2024-01-01T00:01:00Z", 200),
                (f"{PARENT}/jobs/admin", "2024-01-01T00:02:00Z", 200),
            ]
            assert http.post(f"{base}/advance", json={"seconds": -1}).status_code == 400
            assert http.post(f"{base}/advance", content=b"nope").status_code == 400
            assert http.get(f"{base}/nothing").status_code == 404
        c.transport.close()


def test_cli_runs_in_the_foreground_and_stops_on_sigterm(target) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "common.local.emulators.scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--admin-port",
            "0",
            "--frozen-clock",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"ready on (\S+) admin=(\S+)", line)
        assert match, line
        c = scheduler_client_for(match.group(1))
        c.create_job(parent=PARENT, job=http_job("cli", target.url))
        with httpx.Client(trust_env=False, timeout=10) as http:
            fired = http.post(f"http://{match.group(2)}/advance", json={"seconds": 60}).json()["fired"]
        assert [f["status"] for f in fired] == [200]
        c.transport.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        assert "fired projects/demo/locations/us-central1/jobs/cli" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
