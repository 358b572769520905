"""The Cloud Tasks emulator, driven by the stock google-cloud-tasks client over plaintext gRPC.

Targets are small HTTP servers on 127.0.0.1 that record what they receive. Waits are bounded waits on
conditions; the only time-based waits check that nothing happens (paused queue) or that a window passes.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

from common.gcp.clients import tasks_client_for
from common.local.emulators.kit.clock import Clock, FrozenClock, SystemClock
from common.local.emulators.oidc import LocalSigner
from common.local.emulators.tasks import TasksEmulator, _eta_header, _ts

PROJECT = "tributary-test"
LOCATION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
ROOT = Path(__file__).resolve().parents[2]


# The ETA header and the task's schedule_time are the same truncated microsecond. Rounding
# the header instead once put it 1 µs later than schedule_time, failing a CI run at random.
@pytest.mark.parametrize("t", [1795397765.5129206, 1795397765.9999996, 1767225600.0, 1767225600.1234564])
def test_eta_header_matches_schedule_time(t: float) -> None:
    ts = _ts(t)
    assert _eta_header(t) == f"{ts.seconds}.{ts.nanos // 1000:06d}"


# --- a recording HTTP target -----------------------------------------------------------------------


@dataclass
class Received:
    at: float  # wall clock, on arrival (the emulator's clock when the test freezes it)
    mono: float
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


# A plan maps the 0-based request number to a status, or to (hold seconds, status).
Plan = Callable[[int], "int | tuple[float, int]"]


class Target:
    """An HTTP server on 127.0.0.1 that records requests, with their time on ``clock``, and answers per ``plan``."""

    def __init__(self, plan: Plan | None = None, clock: Clock | None = None) -> None:
        self.plan: Plan = plan or (lambda n: 200)
        self.clock: Clock = clock or SystemClock()
        self.received: list[Received] = []
        self.cond = threading.Condition()
        self.inflight = 0
        self.max_inflight = 0
        self.release = threading.Event()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with target.cond:
                    n = len(target.received)
                    target.received.append(
                        Received(
                            target.clock.time(),
                            target.clock.monotonic(),
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                        )
                    )
                    target.inflight += 1
                    target.max_inflight = max(target.max_inflight, target.inflight)
                    target.cond.notify_all()
                answer = target.plan(n)
                hold, status = answer if isinstance(answer, tuple) else (0.0, answer)
                if hold:
                    target.release.wait(hold)
                with target.cond:
                    target.inflight -= 1
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the emulator gave up (dispatch deadline)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.received) < n:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"expected {n} requests, got {len(self.received)}"
                self.cond.wait(remaining)
            return list(self.received)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., TasksEmulator]]:
    started: list[TasksEmulator] = []

    def make(**kwargs: object) -> TasksEmulator:
        kwargs.setdefault("min_dispatch_deadline", 0.1)
        emu = TasksEmulator(**kwargs)  # type: ignore[arg-type]
        emu.start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture
def emu(make_emulator: Callable[..., TasksEmulator]) -> TasksEmulator:
    return make_emulator()


@pytest.fixture
def clock() -> FrozenClock:
    """A clock that moves only with ``emu.advance``: retries and schedules are tested without waiting."""
    return FrozenClock()


@pytest.fixture
def frozen(make_emulator: Callable[..., TasksEmulator], clock: FrozenClock) -> TasksEmulator:
    return make_emulator(clock=clock)


@pytest.fixture
def make_client() -> Iterator[Callable[[TasksEmulator], tasks_v2.CloudTasksClient]]:
    clients: list[tasks_v2.CloudTasksClient] = []

    def make(emulator: TasksEmulator) -> tasks_v2.CloudTasksClient:
        client = tasks_client_for(emulator.address)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.transport.close()


@pytest.fixture
def client(emu: TasksEmulator, make_client: Callable[[TasksEmulator], tasks_v2.CloudTasksClient]):
    return make_client(emu)


@pytest.fixture
def make_target() -> Iterator[Callable[..., Target]]:
    targets: list[Target] = []

    def make(plan: Plan | None = None, clock: Clock | None = None) -> Target:
        target = Target(plan, clock)
        targets.append(target)
        return target

    yield make
    for target in targets:
        target.close()


def queue_path(qid: str) -> str:
    return f"{PARENT}/queues/{qid}"


def create_queue(client: tasks_v2.CloudTasksClient, qid: str, **fields: object) -> tasks_v2.Queue:
    return client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=queue_path(qid), **fields))


def http_task(url: str, *, name: str = "", body: bytes = b"", **fields: object) -> tasks_v2.Task:
    return tasks_v2.Task(name=name, http_request=tasks_v2.HttpRequest(url=url, body=body), **fields)


def retry(min_backoff: float = 0.1, max_backoff: float = 10.0, **fields: object) -> tasks_v2.RetryConfig:
    return tasks_v2.RetryConfig(
        min_backoff=duration_pb2.Duration(nanos=int(min_backoff * 1e9) % 10**9, seconds=int(min_backoff)),
        max_backoff=duration_pb2.Duration(seconds=int(max_backoff)),
        **fields,
    )


# --- queues ----------------------------------------------------------------------------------------


def test_queue_defaults_get_list_delete(client: tasks_v2.CloudTasksClient) -> None:
    q = create_queue(client, "ingest-gdelt")
    assert q.name == queue_path("ingest-gdelt")
    assert q.state == tasks_v2.Queue.State.RUNNING
    assert q.rate_limits.max_dispatches_per_second == 500
    assert q.rate_limits.max_burst_size == 100
    assert q.rate_limits.max_concurrent_dispatches == 1000
    assert q.retry_config.max_attempts == 100
    assert q.retry_config.min_backoff == dt.timedelta(seconds=0.1)
    assert q.retry_config.max_backoff == dt.timedelta(seconds=3600)
    assert q.retry_config.max_doublings == 16

    assert client.get_queue(name=q.name) == q
    assert [x.name for x in client.list_queues(parent=PARENT)] == [q.name]
    client.delete_queue(name=q.name)
    with pytest.raises(exceptions.NotFound, match="does not exist"):
        client.get_queue(name=q.name)
    with pytest.raises(exceptions.NotFound):
        client.delete_queue(name=q.name)


def test_queue_errors_map_to_api_core_exceptions(client: tasks_v2.CloudTasksClient) -> None:
    create_queue(client, "q1")
    with pytest.raises(exceptions.AlreadyExists):
        create_queue(client, "q1")
    with pytest.raises(exceptions.InvalidArgument, match="QUEUE_ID"):
        create_queue(client, "bad_id")  # underscores are not allowed in queue ids
    with pytest.raises(exceptions.InvalidArgument, match="QUEUE_ID"):
        create_queue(client, "x" * 101)
    with pytest.raises(exceptions.InvalidArgument, match="not in parent"):
        client.create_queue(
            parent=PARENT, queue=tasks_v2.Queue(name=f"projects/{PROJECT}/locations/europe-west1/queues/q2")
        )
    with pytest.raises(exceptions.InvalidArgument, match="max_dispatches_per_second"):
        create_queue(client, "q3", rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=501))
    with pytest.raises(exceptions.InvalidArgument, match="min_backoff"):
        create_queue(client, "q4", retry_config=retry(min_backoff=20, max_backoff=10))
    with pytest.raises(exceptions.InvalidArgument):
        client.get_queue(name="queues/q1")
    with pytest.raises(exceptions.NotFound):
        client.pause_queue(name=queue_path("missing"))
    with pytest.raises(exceptions.MethodNotImplemented):
        client.get_iam_policy(resource=queue_path("q1"))


def test_update_queue_honours_mask_and_creates_missing(client: tasks_v2.CloudTasksClient) -> None:
    create_queue(client, "q", retry_config=retry(max_attempts=7))
    q = client.update_queue(
        queue=tasks_v2.Queue(
            name=queue_path("q"),
            rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=20, max_concurrent_dispatches=3),
            retry_config=tasks_v2.RetryConfig(max_attempts=9),
        ),
        update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.max_dispatches_per_second"]),
    )
    assert q.rate_limits.max_dispatches_per_second == 20
    assert q.rate_limits.max_burst_size == 4  # output only, follows the rate
    assert q.rate_limits.max_concurrent_dispatches == 1000  # not in the mask
    assert q.retry_config.max_attempts == 7

    # Empty mask: every field given is updated, the others are kept.
    q = client.update_queue(
        queue=tasks_v2.Queue(name=queue_path("q"), retry_config=tasks_v2.RetryConfig(max_attempts=9))
    )
    assert q.retry_config.max_attempts == 9
    assert q.retry_config.min_backoff == dt.timedelta(seconds=0.1)
    assert q.rate_limits.max_dispatches_per_second == 20

    # A masked field that is unset goes back to the default (like gcloud's --clear-*).
    q = client.update_queue(
        queue=tasks_v2.Queue(name=queue_path("q")),
        update_mask=field_mask_pb2.FieldMask(paths=["retry_config.max_attempts"]),
    )
    assert q.retry_config.max_attempts == 100

    with pytest.raises(exceptions.InvalidArgument, match="unknown"):
        client.update_queue(
            queue=tasks_v2.Queue(name=queue_path("q")), update_mask=field_mask_pb2.FieldMask(paths=["nope"])
        )
    created = client.update_queue(queue=tasks_v2.Queue(name=queue_path("fresh")))  # UpdateQueue upserts
    assert client.get_queue(name=created.name).rate_limits.max_dispatches_per_second == 500


def test_list_paging_and_filter(client: tasks_v2.CloudTasksClient, make_target: Callable[..., Target]) -> None:
    for i in range(5):
        create_queue(client, f"q{i}")
    client.pause_queue(name=queue_path("q3"))
    pages = list(client.list_queues(request={"parent": PARENT, "page_size": 2}).pages)
    assert [len(p.queues) for p in pages] == [2, 2, 1]
    assert [q.name for p in pages for q in p.queues] == [queue_path(f"q{i}") for i in range(5)]
    paused = list(client.list_queues(request={"parent": PARENT, "filter": "state: PAUSED"}))
    assert [q.name for q in paused] == [queue_path("q3")]

    later = timestamp_pb2.Timestamp(seconds=int(time.time()) + 600)
    target = make_target()
    for _ in range(5):
        client.create_task(parent=queue_path("q0"), task=http_task(target.url, schedule_time=later))
    pages = list(client.list_tasks(request={"parent": queue_path("q0"), "page_size": 2}).pages)
    assert [len(p.tasks) for p in pages] == [2, 2, 1]
    assert len({t.name for p in pages for t in p.tasks}) == 5
    with pytest.raises(exceptions.InvalidArgument, match="page_token"):
        client.list_tasks(request={"parent": queue_path("q0"), "page_token": "%%%"})


# --- dispatch --------------------------------------------------------------------------------------


def test_dispatch_method_body_and_headers(
    emu: TasksEmulator, client: tasks_v2.CloudTasksClient, make_target: Callable[..., Target]
) -> None:
    target = make_target()
    create_queue(client, "ingest-fred")
    task = client.create_task(
        parent=queue_path("ingest-fred"),
        task=tasks_v2.Task(
            name=queue_path("ingest-fred") + "/tasks/job-123",
            http_request=tasks_v2.HttpRequest(
                http_method=tasks_v2.HttpMethod.PUT,
                url=target.url + "/fred?x=1",
                headers={
                    "Content-Type": "application/json",
                    "X-Job": "123",
                    "User-Agent": "mine",
                    "X-CloudTasks-TaskName": "forged",
                },
                body=b'{"source": "fred"}',
            ),
        ),
    )
    (got,) = target.wait_for(1)
    assert got.method == "PUT"
    assert got.path == "/fred?x=1"
    assert got.body == b'{"source": "fred"}'
    h = got.headers
    assert h["content-type"] == "application/json"
    assert h["x-job"] == "123"
    assert h["user-agent"] == "Google-Cloud-Tasks"
    assert h["x-cloudtasks-queuename"] == "ingest-fred"
    assert h["x-cloudtasks-taskname"] == "job-123"
    assert h["x-cloudtasks-taskretrycount"] == "0"
    assert h["x-cloudtasks-taskexecutioncount"] == "0"
    assert float(h["x-cloudtasks-tasketa"]) == pytest.approx(task.schedule_time.timestamp(), abs=1e-6)
    assert "x-cloudtasks-taskpreviousresponse" not in h
    assert "authorization" not in h

    # A task that succeeds is deleted.
    assert emu.wait_idle(5)
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=task.name)

    # The method defaults to POST; a GET carries no body; an unnamed task gets a generated id.
    client.create_task(parent=queue_path("ingest-fred"), task=http_task(target.url + "/a"))
    get = tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=target.url + "/b", http_method=tasks_v2.HttpMethod.GET))
    created = client.create_task(parent=queue_path("ingest-fred"), task=get)
    assert created.name.rsplit("/", 1)[1].isdigit()
    methods = {r.path: r.method for r in target.wait_for(3)}
    assert methods == {"/fred?x=1": "PUT", "/a": "POST", "/b": "GET"}


def test_schedule_time_is_honoured(
    frozen: TasksEmulator,
    clock: FrozenClock,
    make_client: Callable[[TasksEmulator], tasks_v2.CloudTasksClient],
    make_target: Callable[..., Target],
) -> None:
    client = make_client(frozen)
    target = make_target(clock=clock)
    create_queue(client, "q")
    when = clock.time() + 0.6
    ts = timestamp_pb2.Timestamp(seconds=int(when), nanos=int((when % 1) * 1e9) // 1000 * 1000)
    task = client.create_task(parent=queue_path("q"), task=http_task(target.url, schedule_time=ts))
    assert task.schedule_time.timestamp() == pytest.approx(ts.seconds + ts.nanos / 1e9, abs=1e-6)
    frozen.advance(0.5)
    assert frozen.settle() and target.received == []  # not due yet
    frozen.advance(0.2)
    (got,) = target.wait_for(1, timeout=5)
    assert got.at >= ts.seconds + ts.nanos / 1e9
    assert float(got.headers["x-cloudtasks-tasketa"]) == pytest.approx(ts.seconds + ts.nanos / 1e9, abs=1e-6)

    # A schedule_time in the past means now; more than 30 days ahead is refused.
    past = timestamp_pb2.Timestamp(seconds=int(clock.time()) - 3600)
    now_task = client.create_task(parent=queue_path("q"), task=http_task(target.url, schedule_time=past))
    assert now_task.schedule_time.timestamp() >= clock.time() - 5
    too_far = timestamp_pb2.Timestamp(seconds=int(clock.time()) + 31 * 24 * 3600)
    with pytest.raises(exceptions.InvalidArgument, match="30 days"):
        client.create_task(parent=queue_path("q"), task=http_task(target.url, schedule_time=too_far))


def test_pause_resume_and_purge(
    emu: TasksEmulator, client: tasks_v2.CloudTasksClient, make_target: Callable[..., Target]
) -> None:
    target = make_target()
    create_queue(client, "q")
    assert client.pause_queue(name=queue_path("q")).state == tasks_v2.Queue.State.PAUSED
    client.create_task(parent=queue_path("q"), task=http_task(target.url))
    assert not emu.wait_idle(0.3)  # paused: nothing is dispatched
    assert target.received == []
    assert len(list(client.list_tasks(parent=queue_path("q")))) == 1
    assert client.resume_queue(name=queue_path("q")).state == tasks_v2.Queue.State.RUNNING
    target.wait_for(1)
    assert emu.wait_idle(5)

    later = timestamp_pb2.Timestamp(seconds=int(time.time()) + 600)
    for _ in range(3):
        client.create_task(parent=queue_path("q"), task=http_task(target.url, schedule_time=later))
    purged = client.purge_queue(name=queue_path("q"))
    assert purged.purge_time.timestamp() == pytest.approx(time.time(), abs=5)
    assert list(client.list_tasks(parent=queue_path("q"))) == []


def test_run_task_dispatches_now_even_when_paused(
    emu: TasksEmulator, client: tasks_v2.CloudTasksClient, make_target: Callable[..., Target]
) -> None:
    target = make_target()
    create_queue(client, "q")
    later = timestamp_pb2.Timestamp(seconds=int(time.time()) + 600)
    task = client.create_task(parent=queue_path("q"), task=http_task(target.url, schedule_time=later))
    client.pause_queue(name=queue_path("q"))
    ran = client.run_task(name=task.name)
    assert ran.dispatch_count == 1
    assert ran.first_attempt.dispatch_time is not None
    (got,) = target.wait_for(1)
    assert got.headers["x-cloudtasks-taskretrycount"] == "0"
    assert emu.wait_idle(5)
    with pytest.raises(exceptions.NotFound):
        client.run_task(name=task.name)  # succeeded, so deleted


def test_views_omit_or_include_the_body(client: tasks_v2.CloudTasksClient, make_target: Callable[..., Target]) -> None:
    target = make_target()
    create_queue(client, "q")
    later = timestamp_pb2.Timestamp(seconds=int(time.time()) + 600)
    basic = client.create_task(parent=queue_path("q"), task=http_task(target.url, body=b"secret", schedule_time=later))
    assert basic.view == tasks_v2.Task.View.BASIC
    assert basic.http_request.body == b""
    assert basic.http_request.url == target.url
    full = client.get_task(request={"name": basic.name, "response_view": tasks_v2.Task.View.FULL})
    assert full.view == tasks_v2.Task.View.FULL
    assert full.http_request.body == b"secret"
    assert client.get_task(name=basic.name).http_request.body == b""
    listed = list(client.list_tasks(request={"parent": queue_path("q"), "response_view": tasks_v2.Task.View.FULL}))
    assert [t.http_request.body for t in listed] == [b"secret"]
    assert [t.http_request.body for t in client.list_tasks(parent=queue_path("q"))] == [b""]


def test_task_errors(client: tasks_v2.CloudTasksClient, make_target: Callable[..., Target]) -> None:
    target = make_target()
    create_queue(client, "q")
    with pytest.raises(exceptions.NotFound, match="does not exist"):
        client.create_task(parent=queue_path("missing"), task=http_task(target.url))
    with pytest.raises(exceptions.InvalidArgument, match="TASK_ID"):
        client.create_task(parent=queue_path("q"), task=http_task(target.url, name=queue_path("q") + "/tasks/a.b"))
    with pytest.raises(exceptions.InvalidArgument, match="not in queue"):
        create_queue(client, "other")
        client.create_task(parent=queue_path("q"), task=http_task(target.url, name=queue_path("other") + "/tasks/a"))
    with pytest.raises(exceptions.InvalidArgument, match="POST, PUT or PATCH"):
        get = tasks_v2.HttpRequest(url=target.url, http_method=tasks_v2.HttpMethod.GET, body=b"x")
        client.create_task(parent=queue_path("q"), task=tasks_v2.Task(http_request=get))
    with pytest.raises(exceptions.InvalidArgument, match="http://"):
        client.create_task(parent=queue_path("q"), task=http_task("ftp://127.0.0.1/x"))
    with pytest.raises(exceptions.InvalidArgument, match="http_request"):
        client.create_task(parent=queue_path("q"), task=tasks_v2.Task())
    with pytest.raises(exceptions.MethodNotImplemented):
        app_engine = tasks_v2.AppEngineHttpRequest(relative_uri="/x")
        client.create_task(parent=queue_path("q"), task=tasks_v2.Task(app_engine_http_request=app_engine))
    with pytest.raises(exceptions.InvalidArgument, match="100KB"):
        client.create_task(parent=queue_path("q"), task=http_task(target.url, body=b"x" * 101 * 1024))
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=queue_path("q") + "/tasks/nope")
    with pytest.raises(exceptions.NotFound):
        client.delete_task(name=queue_path("q") + "/tasks/nope")


def test_dispatch_deadline_bounds_as_cloud_tasks(
    make_emulator: Callable[..., TasksEmulator],
    make_client: Callable[[TasksEmulator], tasks_v2.CloudTasksClient],
) -> None:
    client = make_client(make_emulator(min_dispatch_deadline=15.0))  # the real bounds: 15 s to 30 min
    create_queue(client, "q")
    url = "http://127.0.0.1:9/unused"
    later = timestamp_pb2.Timestamp(seconds=int(time.time()) + 600)
    for seconds in (14, 1801):
        with pytest.raises(exceptions.InvalidArgument, match="dispatch_deadline"):
            deadline = duration_pb2.Duration(seconds=seconds)
            client.create_task(parent=queue_path("q"), task=http_task(url, dispatch_deadline=deadline))
    ok = client.create_task(
        parent=queue_path("q"),
        task=http_task(url, dispatch_deadline=duration_pb2.Duration(seconds=15), schedule_time=later),
    )
    assert ok.dispatch_deadline == dt.timedelta(seconds=15)
    default = client.create_task(parent=queue_path("q"), task=http_task(url, schedule_time=later))
    assert default.dispatch_deadline == dt.timedelta(minutes=10)


# --- de-duplication --------------------------------------------------------------------------------


def test_named_tasks_are_deduplicated(
    emu: TasksEmulator, client: tasks_v2.CloudTasksClient, make_target: Callable[..., Target]
) -> None:
    target = make_target()
    create_queue(client, "q")
    name = queue_path("q") + "/tasks/gdelt-20250101"
    later = timestamp_pb2.Timestamp(seconds=int(time.time()) + 600)
    client.create_task(parent=queue_path("q"), task=http_task(target.url, name=name, schedule_time=later))
    with pytest.raises(exceptions.AlreadyExists):
        client.create_task(parent=queue_path("q"), task=http_task(target.url, name=name))
    client.delete_task(name=name)
    with pytest.raises(exceptions.AlreadyExists, match="existed too recently"):
        client.create_task(parent=queue_path("q"), task=http_task(target.url, name=name))

    done = queue_path("q") + "/tasks/done"
    client.create_task(parent=queue_path("q"), task=http_task(target.url, name=done))
    target.wait_for(1)
    assert emu.wait_idle(5)
    with pytest.raises(exceptions.AlreadyExists, match="existed too recently"):
        client.create_task(parent=queue_path("q"), task=http_task(target.url, name=done))


def test_dedup_window_expires(
    make_emulator: Callable[..., TasksEmulator],
    clock: FrozenClock,
    make_client: Callable[[TasksEmulator], tasks_v2.CloudTasksClient],
    make_target: Callable[..., Target],
) -> None:
    emu = make_emulator(dedup_window=0.5, clock=clock)
    client = make_client(emu)
    target = make_target()
    create_queue(client, "q")
    name = queue_path("q") + "/tasks/again"
    client.create_task(parent=queue_path("q"), task=http_task(target.url, name=name))
    target.wait_for(1)
    assert emu.wait_idle(5)
    finished = clock.monotonic()
    refusals = 0
    deadline = finished + 3.0
    while True:
        try:
            client.create_task(parent=queue_path("q"), task=http_task(target.url, name=name))
            break
        except exceptions.AlreadyExists:
            refusals += 1
            assert clock.monotonic() < deadline, "the name was never released"
            emu.advance(0.05)
    assert refusals >= 1
    assert clock.monotonic() - finished >= 0.4
    target.wait_for(2)


# --- retries ---------------------------------------------------------------------------------------


def test_retries_with_backoff_and_counters(
    frozen: TasksEmulator,
    clock: FrozenClock,
    make_client: Callable[[TasksEmulator], tasks_v2.CloudTasksClient],
    make_target: Callable[..., Target],
) -> None:
    client, emu = make_client(frozen), frozen
    statuses = [500, 404, 200]
    target = make_target(lambda n: statuses[n], clock=clock)
    # Binary fractions, so that the frozen clock's sums are exact and the gaps are the backoffs to the bit.
    create_queue(client, "q", retry_config=retry(min_backoff=0.125, max_backoff=10))
    client.create_task(parent=queue_path("q"), task=http_task(target.url))
    target.wait_for(1)
    emu.advance(0.125)
    target.wait_for(2)
    emu.advance(0.25)
    got = target.wait_for(3)
    assert emu.wait_idle(5)
    assert [r.headers["x-cloudtasks-taskretrycount"] for r in got] == ["0", "1", "2"]
    # ExecutionCount counts earlier responses, except 5xx ones (Cloud Tasks' documented meaning).
    assert [r.headers["x-cloudtasks-taskexecutioncount"] for r in got] == ["0", "0", "1"]
    assert [r.headers.get("x-cloudtasks-taskpreviousresponse") for r in got] == [None, "500", "404"]
    gaps = [b.mono - a.mono for a, b in itertools.pairwise(got)]
    assert 0.1 <= gaps[0] < 0.1 + 0.5  # min_backoff
    assert 0.2 <= gaps[1] < 0.2 + 0.5  # doubled
    # Each retry's ETA is its new schedule time.
    etas = [float(r.headers["x-cloudtasks-tasketa"]) for r in got]
    assert etas[1] - etas[0] >= 0.1 and etas[2] - etas[1] >= 0.2
    assert len(target.received) == 3


def test_max_attempts_is_honoured(
    frozen: TasksEmulator,
    clock: FrozenClock,
    make_client: Callable[[TasksEmulator], tasks_v2.CloudTasksClient],
    make_target: Callable[..., Target],
) -> None:
    client, emu = make_client(frozen), frozen
    target = make_target(lambda n: 503, clock=clock)
    create_queue(client, "q", retry_config=retry(min_backoff=0.05, max_backoff=1, max_attempts=2))
    task = client.create_task(parent=queue_path("q"), task=http_task(target.url))
    target.wait_for(1)
    emu.advance(0.1)
    target.wait_for(2)
    assert emu.wait_idle(5)  # dropped after the second failure
    assert len(target.received) == 2
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=task.name)


def test_max_retry_duration_with_unlimited_attempts(
    frozen: TasksEmulator,
    clock: FrozenClock,
    make_client: Callable[[TasksEmulator], tasks_v2.CloudTasksClient],
    make_target: Callable[..., Target],
) -> None:
    client, emu = make_client(frozen), frozen
    target = make_target(lambda n: 500, clock=clock)
    config = retry(min_backoff=0.05, max_backoff=1, max_attempts=-1)
    config.max_retry_duration = duration_pb2.Duration(nanos=300_000_000)
    q = create_queue(client, "q", retry_config=config)
    assert q.retry_config.max_attempts == -1
    client.create_task(parent=queue_path("q"), task=http_task(target.url))
    target.wait_for(1)
    for _ in range(100):  # 5 s of emulator time at most
        if emu.wait_idle(0):
            break
        emu.advance(0.05)
    assert emu.wait_idle(5)
    got = list(target.received)
    assert len(got) >= 2
    assert got[-1].mono - got[0].mono >= 0.25


def test_attempt_bookkeeping(
    frozen: TasksEmulator,
    make_client: Callable[[TasksEmulator], tasks_v2.CloudTasksClient],
    make_target: Callable[..., Target],
) -> None:
    client = make_client(frozen)
    target = make_target(lambda n: 500)
    create_queue(client, "q", retry_config=retry(min_backoff=30, max_backoff=30))
    task = client.create_task(parent=queue_path("q"), task=http_task(target.url))
    target.wait_for(1)
    assert frozen.settle(5)  # the answer is recorded
    seen = client.get_task(name=task.name)
    assert seen.response_count == 1
    assert seen.dispatch_count == 1
    assert seen.first_attempt.dispatch_time is not None
    assert seen.last_attempt.response_status.code == 13  # INTERNAL for HTTP 500
    assert seen.last_attempt.response_time >= seen.last_attempt.dispatch_time
    retry_at = seen.schedule_time.timestamp() - seen.last_attempt.response_time.timestamp()
    assert retry_at == pytest.approx(30, abs=0.01)
    client.delete_task(name=task.name)  # a task waiting for its retry can be deleted
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=task.name)


def test_dispatch_deadline_times_out_and_retries(
    emu: TasksEmulator, client: tasks_v2.CloudTasksClient, make_target: Callable[..., Target]
) -> None:
    target = make_target(lambda n: (5.0, 200) if n == 0 else 200)  # the first answer is held 5 s
    create_queue(client, "q", retry_config=retry(min_backoff=0.1))
    deadline = duration_pb2.Duration(nanos=300_000_000)
    client.create_task(parent=queue_path("q"), task=http_task(target.url, dispatch_deadline=deadline))
    first, second = target.wait_for(2)
    assert emu.wait_idle(5)
    assert second.mono - first.mono >= 0.3 + 0.1
    assert second.headers["x-cloudtasks-taskretrycount"] == "1"
    assert second.headers["x-cloudtasks-taskexecutioncount"] == "0"  # no response was received
    assert second.headers["x-cloudtasks-taskpreviousresponse"] == "0"
    assert second.headers["x-cloudtasks-taskretryreason"] == "DEADLINE_EXCEEDED"


# --- rate limits -----------------------------------------------------------------------------------


def test_max_dispatches_per_second(
    emu: TasksEmulator, client: tasks_v2.CloudTasksClient, make_target: Callable[..., Target]
) -> None:
    target = make_target()
    q = create_queue(client, "q", rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=5))
    assert q.rate_limits.max_burst_size == 1
    client.pause_queue(name=q.name)  # enqueue all ten first, then let them go
    for _ in range(10):
        client.create_task(parent=q.name, task=http_task(target.url))
    client.resume_queue(name=q.name)
    got = target.wait_for(10, timeout=6)
    span = got[-1].mono - got[0].mono
    assert 1.2 <= span < 4.0
    assert emu.wait_idle(5)


def test_max_concurrent_dispatches(
    emu: TasksEmulator, client: tasks_v2.CloudTasksClient, make_target: Callable[..., Target]
) -> None:
    target = make_target(lambda n: (0.1, 200))
    q = create_queue(client, "q", rate_limits=tasks_v2.RateLimits(max_concurrent_dispatches=1))
    for _ in range(4):
        client.create_task(parent=q.name, task=http_task(target.url))
    target.wait_for(4)
    assert emu.wait_idle(5)
    assert target.max_inflight == 1


# --- OIDC ------------------------------------------------------------------------------------------


def test_oidc_token_verifies(
    make_emulator: Callable[..., TasksEmulator],
    make_client: Callable[[TasksEmulator], tasks_v2.CloudTasksClient],
    make_target: Callable[..., Target],
) -> None:
    signer = LocalSigner()
    emu = make_emulator(signer=signer)
    client = make_client(emu)
    target = make_target()
    create_queue(client, "q")
    email = "invoker@tributary-test.iam.gserviceaccount.com"
    for audience in ("https://ingest.example.run.app", ""):
        client.create_task(
            parent=queue_path("q"),
            task=tasks_v2.Task(
                http_request=tasks_v2.HttpRequest(
                    url=target.url + "/ingest",
                    headers={"Authorization": "Bearer forged"},
                    oidc_token=tasks_v2.OidcToken(service_account_email=email, audience=audience),
                )
            ),
        )
    got = target.wait_for(2)
    assert emu.wait_idle(5)
    keys = jwt.PyJWKSet.from_dict(signer.jwks())
    audiences = []
    for r in got:
        scheme, token = r.headers["authorization"].split(" ", 1)
        assert scheme == "Bearer"
        key = keys[jwt.get_unverified_header(token)["kid"]]
        expected = jwt.decode(token, options={"verify_signature": False})["aud"]
        claims = jwt.decode(
            token, key.key, algorithms=["RS256"], audience=expected, issuer="https://accounts.google.com"
        )
        assert claims["email"] == email
        audiences.append(claims["aud"])
    assert sorted(audiences) == sorted(["https://ingest.example.run.app", target.url + "/ingest"])


def test_a_taken_port_is_refused(emu: TasksEmulator) -> None:
    # gRPC sets SO_REUSEPORT by default, so a second server would silently share the port.
    with pytest.raises(RuntimeError):
        TasksEmulator(port=emu.port).start()


# --- command line ----------------------------------------------------------------------------------


def test_cli_serves_and_exits_on_sigterm(make_target: Callable[..., Target], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "common.local.emulators.tasks",
            "--port",
            "0",
            "--oidc-key-file",
            str(tmp_path / "k.pem"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded by the pytest timeout; the line comes once listening
        assert "listening on 127.0.0.1:" in line, line
        address = line.strip().rsplit(" ", 1)[1]
        client = tasks_client_for(address)
        target = make_target()
        try:
            create_queue(client, "q")
            client.create_task(parent=queue_path("q"), task=http_task(target.url))
            target.wait_for(1)
        finally:
            client.transport.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        _, err = proc.communicate(timeout=5)
        assert "dispatch queue=q task=" in err and "status=200" in err
        assert (tmp_path / "k.pem").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_admin_endpoint_advances_a_frozen_clock(clock: FrozenClock, make_target: Callable[..., Target]) -> None:
    target = make_target(clock=clock)
    with TasksEmulator(clock=clock, admin_port=0) as emu:
        assert emu.admin_address
        client = tasks_client_for(emu.address)
        create_queue(client, "q")
        later = timestamp_pb2.Timestamp(seconds=int(clock.time()) + 60)
        client.create_task(parent=queue_path("q"), task=http_task(target.url, schedule_time=later))
        base = f"http://{emu.admin_address}"
        with httpx.Client(trust_env=False, timeout=10) as http:
            assert http.get(f"{base}/healthz").json()["queues"] == 1
            assert http.post(f"{base}/advance", json={"seconds": 60}).status_code == 200
            (got,) = target.wait_for(1)
            assert got.at == later.seconds
            assert http.post(f"{base}/advance", json={"seconds": -1}).status_code == 400
        assert emu.wait_idle(5)
        client.transport.close()


def test_the_stack_waits_for_a_serving_grpc_server_not_an_open_port(emu: TasksEmulator) -> None:
    """A listening socket accepts connections before a server serves (devstack.grpc_ready)."""
    import socket

    from common.local.stack import grpc_ready, tcp_ready

    assert grpc_ready(int(emu.address.rsplit(":", 1)[1]))()
    with socket.socket() as listening:  # accepts TCP connections, never speaks gRPC
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert tcp_ready(port)()
        assert not grpc_ready(port)()
