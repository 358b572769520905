"""Conformance: request → response shapes from Google's REST references, run against both transports.

Each case is one call, written once as the REST request (verb, path, JSON body) and once as the gRPC request,
with the canonical code and the part of the JSON answer that Google's reference documents. REST is sent as raw
HTTP (so the JSON text, the HTTP status and the error body are what is checked); gRPC goes through the stock
client and its answer is rendered with ``json_format``, so both must produce the same JSON.
References: cloud.google.com/tasks/docs/reference/rest/v2 and cloud.google.com/scheduler/docs/reference/rest/v1.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import proto
import pytest
from google.api_core import exceptions
from google.cloud.scheduler_v1.services.cloud_scheduler.transports import rest_base as scheduler_rest_base
from google.cloud.tasks_v2.services.cloud_tasks.transports import rest_base as tasks_rest_base
from google.protobuf import json_format

from common.local.emulators.kit.clock import FrozenClock
from common.local.emulators.kit.locations import Locations
from common.local.emulators.kit.rest import Route
from common.local.emulators.scheduler import SchedulerEmulator, SchedulerEngine
from common.local.emulators.scheduler import rest as scheduler_rest
from common.local.emulators.tasks import TasksEmulator, TasksEngine
from common.local.emulators.tasks import rest as tasks_rest
from tests.emulators.helpers import Receiver, scheduler_client, tasks_client

P = "projects/conf/locations/us-central1"
Q = f"{P}/queues/q"
J = f"{P}/jobs/j"
LATER = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


# --- the HTTP rules are the ones the stock clients send --------------------------------------------


@pytest.mark.parametrize(
    ("routes", "base"),
    [
        (lambda: tasks_rest.routes(TasksEngine(), Locations()), tasks_rest_base._BaseCloudTasksRestTransport),
        (
            lambda: scheduler_rest.routes(SchedulerEngine(), Locations()),
            scheduler_rest_base._BaseCloudSchedulerRestTransport,
        ),
    ],
    ids=["tasks", "scheduler"],
)
def test_every_route_is_the_stock_clients_http_rule(routes: Any, base: Any) -> None:
    served: list[Route] = routes()
    for route in served:
        rule = getattr(base, f"_Base{route.rpc}")._get_http_options()
        assert [(r["method"].upper(), r["uri"], r.get("body")) for r in rule] == [
            (route.verb, route.template, route.body)
        ], route.rpc


# --- the table -------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    rpc: str
    rest: tuple[str, str, dict[str, Any] | None]  # verb, path with query, JSON body
    grpc: dict[str, Any]
    code: str = "OK"
    shape: dict[str, Any] = field(default_factory=dict)  # part of the JSON answer (all of it when exact)
    exact: bool = False


TASKS_CASES = [
    Case("queue defaults", "GetQueue", ("GET", f"/v2/{Q}", None), {"name": Q}, shape={
        "name": Q, "state": "RUNNING",
        "rateLimits": {"maxDispatchesPerSecond": 500.0, "maxBurstSize": 100, "maxConcurrentDispatches": 1000},
        "retryConfig": {"maxAttempts": 100, "minBackoff": "0.100s", "maxBackoff": "3600s", "maxDoublings": 16},
    }, exact=True),
    Case("missing queue", "GetQueue", ("GET", f"/v2/{P}/queues/nope", None), {"name": f"{P}/queues/nope"},
         "NOT_FOUND"),
    Case("queue exists", "CreateQueue", ("POST", f"/v2/{P}/queues", {"name": Q}),
         {"parent": P, "queue": {"name": Q}}, "ALREADY_EXISTS"),
    Case("rate out of range", "CreateQueue",
         ("POST", f"/v2/{P}/queues", {"name": f"{P}/queues/fast", "rateLimits": {"maxDispatchesPerSecond": 501}}),
         {"parent": P, "queue": {"name": f"{P}/queues/fast", "rate_limits": {"max_dispatches_per_second": 501}}},
         "INVALID_ARGUMENT"),
    Case("queue http target and logging", "CreateQueue",
         ("POST", f"/v2/{P}/queues", {"name": f"{P}/queues/ovr", "stackdriverLoggingConfig": {"samplingRatio": 0.5},
                                      "httpTarget": {"uriOverride": {"host": "example.test", "port": "8443"},
                                                     "httpMethod": "PUT"}}),
         {"parent": P, "queue": {"name": f"{P}/queues/ovr", "stackdriver_logging_config": {"sampling_ratio": 0.5},
                                 "http_target": {"uri_override": {"host": "example.test", "port": 8443},
                                                 "http_method": "PUT"}}},
         shape={"stackdriverLoggingConfig": {"samplingRatio": 0.5},
                "httpTarget": {"uriOverride": {"host": "example.test", "port": "8443"}, "httpMethod": "PUT"}}),
    Case("update through a mask", "UpdateQueue",
         ("PATCH", f"/v2/{Q}?updateMask=retryConfig.maxAttempts", {"retryConfig": {"maxAttempts": 7}}),
         {"queue": {"name": Q, "retry_config": {"max_attempts": 7}},
          "update_mask": {"paths": ["retry_config.max_attempts"]}},
         shape={"retryConfig": {"maxAttempts": 7, "maxDoublings": 16}}),
    Case("list by state", "ListQueues", ("GET", f"/v2/{P}/queues?filter=state%3APAUSED", None),
         {"parent": P, "filter": "state:PAUSED"}, shape={"queues": [{"name": f"{P}/queues/paused"}]}),
    Case("list, one a page", "ListQueues", ("GET", f"/v2/{P}/queues?pageSize=1", None),
         {"parent": P, "page_size": 1}, shape={"queues": [{"name": f"{P}/queues/paused"}]}),
    Case("unsupported filter", "ListQueues", ("GET", f"/v2/{P}/queues?filter=name%3Dx", None),
         {"parent": P, "filter": "name=x"}, "INVALID_ARGUMENT"),
    Case("pause", "PauseQueue", ("POST", f"/v2/{Q}:pause", {}), {"name": Q}, shape={"state": "PAUSED"}),
    Case("task defaults, full view", "CreateTask",
         ("POST", f"/v2/{Q}/tasks", {"task": {"name": f"{Q}/tasks/full", "scheduleTime": LATER,
                                              "httpRequest": {"url": "http://127.0.0.1:9/x", "body": "aGk="}},
                                     "responseView": "FULL"}),
         {"parent": Q, "task": {"name": f"{Q}/tasks/full", "schedule_time": LATER,
                                "http_request": {"url": "http://127.0.0.1:9/x", "body": b"hi"}},
          "response_view": "FULL"},
         shape={"name": f"{Q}/tasks/full", "scheduleTime": LATER, "dispatchDeadline": "600s", "view": "FULL",
                "httpRequest": {"url": "http://127.0.0.1:9/x", "httpMethod": "POST", "body": "aGk="}}),
    Case("basic view leaves the body out", "GetTask", ("GET", f"/v2/{Q}/tasks/t", None), {"name": f"{Q}/tasks/t"},
         shape={"view": "BASIC", "httpRequest": {"url": "http://127.0.0.1:9/t", "httpMethod": "POST"}}, exact=False),
    Case("body with GET", "CreateTask",
         ("POST", f"/v2/{Q}/tasks", {"task": {"httpRequest": {"url": "http://x.test/", "httpMethod": "GET",
                                                              "body": "aGk="}}}),
         {"parent": Q, "task": {"http_request": {"url": "http://x.test/", "http_method": "GET", "body": b"hi"}}},
         "INVALID_ARGUMENT"),
    Case("task exists", "CreateTask",
         ("POST", f"/v2/{Q}/tasks", {"task": {"name": f"{Q}/tasks/t", "httpRequest": {"url": "http://x.test/"}}}),
         {"parent": Q, "task": {"name": f"{Q}/tasks/t", "http_request": {"url": "http://x.test/"}}},
         "ALREADY_EXISTS"),
    Case("delete task", "DeleteTask", ("DELETE", f"/v2/{Q}/tasks/t", None), {"name": f"{Q}/tasks/t"},
         shape={}, exact=True),
    Case("location", "GetLocation", ("GET", f"/v2/{P}", None), {"name": P}, shape={
        "name": P, "locationId": "us-central1", "labels": {"cloud.googleapis.com/region": "us-central1"}}, exact=True),
]  # fmt: skip

SCHEDULER_CASES = [
    Case("job defaults", "GetJob", ("GET", f"/v1/{J}", None), {"name": J}, shape={
        "name": J, "schedule": "* * * * *", "state": "ENABLED", "attemptDeadline": "180s",
        "httpTarget": {"uri": "http://127.0.0.1:9/j", "httpMethod": "POST",
                       "headers": {"User-Agent": "Google-Cloud-Scheduler"}},
        "retryConfig": {"minBackoffDuration": "5s", "maxBackoffDuration": "3600s", "maxDoublings": 5,
                        "maxRetryDuration": "0s"},
    }),
    Case("missing job", "GetJob", ("GET", f"/v1/{P}/jobs/nope", None), {"name": f"{P}/jobs/nope"}, "NOT_FOUND"),
    Case("job exists", "CreateJob", ("POST", f"/v1/{P}/jobs", {"name": J, "schedule": "* * * * *",
                                                               "httpTarget": {"uri": "http://x.test/"}}),
         {"parent": P, "job": {"name": J, "schedule": "* * * * *", "http_target": {"uri": "http://x.test/"}}},
         "ALREADY_EXISTS"),
    Case("bad schedule", "CreateJob", ("POST", f"/v1/{P}/jobs", {"name": f"{P}/jobs/b", "schedule": "every day",
                                                                 "httpTarget": {"uri": "http://x.test/"}}),
         {"parent": P, "job": {"name": f"{P}/jobs/b", "schedule": "every day", "http_target": {"uri": "http://x.test/"}}},
         "INVALID_ARGUMENT"),
    Case("pubsub target and its body", "CreateJob",
         ("POST", f"/v1/{P}/jobs", {"name": f"{P}/jobs/ps", "schedule": "0 * * * *", "pubsubTarget": {
             "topicName": "projects/conf/topics/t", "data": "aGk=", "attributes": {"k": "v"}}}),
         {"parent": P, "job": {"name": f"{P}/jobs/ps", "schedule": "0 * * * *", "pubsub_target": {
             "topic_name": "projects/conf/topics/t", "data": b"hi", "attributes": {"k": "v"}}}},
         shape={"pubsubTarget": {"topicName": "projects/conf/topics/t", "data": "aGk=", "attributes": {"k": "v"}},
                "state": "ENABLED"}),
    Case("update through a mask", "UpdateJob",
         ("PATCH", f"/v1/{J}?updateMask=timeZone", {"timeZone": "Europe/Paris", "schedule": "0 0 * * *"}),
         {"job": {"name": J, "time_zone": "Europe/Paris", "schedule": "0 0 * * *"},
          "update_mask": {"paths": ["time_zone"]}},
         shape={"timeZone": "Europe/Paris", "schedule": "* * * * *"}),
    Case("resume an enabled job", "ResumeJob", ("POST", f"/v1/{J}:resume", {}), {"name": J}, "FAILED_PRECONDITION"),
    Case("pause", "PauseJob", ("POST", f"/v1/{J}:pause", {}), {"name": J}, shape={"state": "PAUSED"}),
    Case("list", "ListJobs", ("GET", f"/v1/{P}/jobs", None), {"parent": P}, shape={"jobs": [{"name": J}]}),
    Case("delete", "DeleteJob", ("DELETE", f"/v1/{J}", None), {"name": J}, shape={}, exact=True),
    Case("location", "GetLocation", ("GET", f"/v1/{P}", None), {"name": P}, shape={"locationId": "us-central1"}),
]  # fmt: skip


def contains(actual: Any, expected: Any) -> bool:
    """``expected`` is a part of ``actual``: dict keys recursively, lists element by element, scalars equal."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(map(contains, actual, expected))
    return bool(actual == expected)


def _as_json(answer: Any) -> dict[str, Any]:
    if hasattr(answer, "pages"):  # a list call's pager: its first page
        answer = next(iter(answer.pages))
    pb = type(answer).pb(answer) if isinstance(answer, proto.Message) else answer
    return json_format.MessageToDict(pb) if pb is not None else {}


def _run(case: Case, transport: str, emu: Any, client: Any) -> tuple[str, dict[str, Any]]:
    """(canonical code, JSON answer or error body) of one case on one transport."""
    if transport == "rest":
        verb, path, body = case.rest
        resp = httpx.request(verb, f"{emu.rest_url}{path}", json=body, timeout=10)
        assert resp.headers["content-type"] == "application/json; charset=UTF-8"
        payload = resp.json()
        if resp.status_code == 200:
            return "OK", payload
        assert set(payload) == {"error"} and set(payload["error"]) == {"code", "message", "status"}
        assert payload["error"]["code"] == resp.status_code and payload["error"]["message"]
        return payload["error"]["status"], payload
    try:
        return "OK", _as_json(getattr(client, _snake(case.rpc))(request=case.grpc))
    except exceptions.GoogleAPICallError as exc:
        assert exc.grpc_status_code is not None
        return exc.grpc_status_code.name, {}


def _check(case: Case, transport: str, emu: Any, client: Any) -> None:
    code, answer = _run(case, transport, emu, client)
    assert code == case.code, answer
    if case.code == "OK":
        assert (answer == case.shape) if case.exact else contains(answer, case.shape), answer


@pytest.fixture
def tasks_emu() -> Iterator[TasksEmulator]:
    with TasksEmulator(rest_port=0) as emu:
        e, t = emu.engine, tasks_client("grpc", emu)
        t.create_queue(parent=P, queue={"name": Q})
        t.create_queue(parent=P, queue={"name": f"{P}/queues/paused"})
        t.pause_queue(name=f"{P}/queues/paused")
        t.create_task(parent=Q, task={"name": f"{Q}/tasks/t", "schedule_time": LATER,
                                      "http_request": {"url": "http://127.0.0.1:9/t", "body": b"x"}})  # fmt: skip
        assert e.queue_count() == 2
        yield emu


@pytest.fixture
def scheduler_emu() -> Iterator[SchedulerEmulator]:
    with SchedulerEmulator(rest_port=0, fire=False) as emu:
        scheduler_client("grpc", emu).create_job(
            parent=P, job={"name": J, "schedule": "* * * * *", "http_target": {"uri": "http://127.0.0.1:9/j"}}
        )
        yield emu


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("case", TASKS_CASES, ids=[c.id for c in TASKS_CASES])
def test_cloud_tasks(case: Case, transport: str, tasks_emu: TasksEmulator) -> None:
    _check(case, transport, tasks_emu, tasks_client("grpc", tasks_emu))


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("case", SCHEDULER_CASES, ids=[c.id for c in SCHEDULER_CASES])
def test_cloud_scheduler(case: Case, transport: str, scheduler_emu: SchedulerEmulator) -> None:
    _check(case, transport, scheduler_emu, scheduler_client("grpc", scheduler_emu))


# --- REST details Google's front end has --------------------------------------------------------------


def test_rest_errors_and_system_parameters(tasks_emu: TasksEmulator) -> None:
    base = f"{tasks_emu.rest_url}/v2/{Q}"
    missing = httpx.get(f"{tasks_emu.rest_url}/v2/{P}/queues/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": 404, "status": "NOT_FOUND",
                                        "message": f"Queue {P}/queues/nope does not exist."}}  # fmt: skip
    unknown = httpx.patch(base, json={"rateLimits": {"maxPerSecond": 1}})
    assert unknown.status_code == 400 and unknown.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert unknown.json()["error"]["message"].startswith("Invalid JSON payload received.")
    not_json = httpx.post(f"{base}:pause", content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    assert httpx.get(f"{tasks_emu.rest_url}/v9/nowhere").json()["error"]["status"] == "NOT_FOUND"
    assert httpx.get(base, params={"alt": "json", "prettyPrint": "false"}).json()["state"] == "RUNNING"
    assert httpx.get(base, params={"$alt": "json;enum-encoding=int"}).json()["state"] == 1  # the Python client's


# --- what a target receives -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_the_full_x_cloudtasks_header_set(transport: str) -> None:
    """First attempt and a retry, with the headers the "Create HTTP target tasks" page lists."""
    receiver = Receiver(status=500)
    try:
        with TasksEmulator(rest_port=0, clock=FrozenClock()) as emu:
            client = tasks_client(transport, emu)
            client.create_queue(parent=P, queue={"name": Q, "retry_config": {"min_backoff": dt.timedelta(seconds=1)}})
            http = {"url": f"{receiver.url}/h", "body": b"{}", "headers": {"Content-Type": "application/json"}}
            task = client.create_task(parent=Q, task={"name": f"{Q}/tasks/h", "http_request": http})
            first = receiver.wait_for(1)[0].headers
            emu.advance(1.0)
            receiver.status = 200
            second = receiver.wait_for(2)[1].headers
    finally:
        receiver.close()
    eta = f"{task.schedule_time.timestamp():.6f}"
    assert {k: v for k, v in first.items() if k.startswith("x-cloudtasks-")} == {
        "x-cloudtasks-queuename": "q",
        "x-cloudtasks-taskname": "h",
        "x-cloudtasks-taskretrycount": "0",
        "x-cloudtasks-taskexecutioncount": "0",
        "x-cloudtasks-tasketa": eta,
    }
    assert (first["user-agent"], first["content-type"]) == ("Google-Cloud-Tasks", "application/json")
    retry = {k: v for k, v in second.items() if k.startswith("x-cloudtasks-")}
    assert retry["x-cloudtasks-taskretrycount"] == "1"
    assert retry["x-cloudtasks-taskexecutioncount"] == "0"  # a 5xx is not an execution (docs/tasks-emulator.md)
    assert retry["x-cloudtasks-taskpreviousresponse"] == "500"
    assert retry["x-cloudtasks-taskretryreason"]
    assert float(retry["x-cloudtasks-tasketa"]) >= float(eta)


def test_a_queue_http_target_overrides_every_task() -> None:
    receiver = Receiver()
    try:
        with TasksEmulator(rest_port=0) as emu:
            port = receiver.server.server_address[1]
            queue = {"name": Q, "httpTarget": {
                "uriOverride": {"host": "127.0.0.1", "port": str(port), "pathOverride": {"path": "/moved"},
                                "uriOverrideEnforceMode": "ALWAYS"},
                "httpMethod": "PUT", "headerOverrides": [{"header": {"key": "X-Env", "value": "local"}}],
                "oidcToken": {"serviceAccountEmail": "q@conf.iam.gserviceaccount.com", "audience": "aud"}}}  # fmt: skip
            assert httpx.post(f"{emu.rest_url}/v2/{P}/queues", json=queue).status_code == 200
            body = base64.b64encode(b"{}").decode()
            task = {"task": {"httpRequest": {"url": "http://elsewhere.test:1/old?a=1", "body": body}}}
            assert httpx.post(f"{emu.rest_url}/v2/{Q}/tasks", json=task).status_code == 200
            (hit,) = receiver.wait_for(1)
    finally:
        receiver.close()
    assert (hit.method, hit.path, hit.headers["x-env"]) == ("PUT", "/moved?a=1", "local")
    assert hit.headers["authorization"].startswith("Bearer ")


def test_a_mask_sub_path_absent_from_the_request_clears_only_that_part() -> None:
    """What gcloud's ``tasks queues update --clear-http-uri-override`` sends: the path, and no httpTarget."""
    with TasksEmulator(rest_port=0) as emu:
        target = {"uriOverride": {"host": "example.test"}, "httpMethod": "PUT"}
        httpx.post(f"{emu.rest_url}/v2/{P}/queues", json={"name": Q, "httpTarget": target}).raise_for_status()
        cleared = httpx.patch(f"{emu.rest_url}/v2/{Q}", params={"updateMask": "httpTarget.uriOverride"})
    assert cleared.json()["httpTarget"] == {"httpMethod": "PUT"}


def test_clearing_a_jobs_token_as_gcloud_does() -> None:
    """``gcloud scheduler jobs update http --clear-auth-token``: four leaf paths of both tokens, neither sent."""
    with SchedulerEmulator(rest_port=0, fire=False) as emu:
        job = {"name": J, "schedule": "* * * * *", "httpTarget": {"uri": "http://x.test/", "oidcToken": {
            "serviceAccountEmail": "sa@conf.iam.gserviceaccount.com"}}}  # fmt: skip
        httpx.post(f"{emu.rest_url}/v1/{P}/jobs", json=job).raise_for_status()
        mask = "httpTarget.oidcToken.serviceAccountEmail,httpTarget.oidcToken.audience,"
        mask += "httpTarget.oauthToken.serviceAccountEmail,httpTarget.oauthToken.scope"
        body = {"name": J, "httpTarget": {"httpMethod": "POST"}, "timeZone": "Etc/UTC"}
        cleared = httpx.patch(f"{emu.rest_url}/v1/{J}", params={"updateMask": mask}, json=body)
    assert cleared.status_code == 200, cleared.text
    assert "oidcToken" not in cleared.json()["httpTarget"] and "oauthToken" not in cleared.json()["httpTarget"]
