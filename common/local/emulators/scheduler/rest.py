"""The Cloud Scheduler emulator's REST front: Cloud Scheduler v1's HTTP rules (JSON over HTTP/1.1) on its engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import proto
from google.cloud import scheduler_v1
from google.cloud.location import locations_pb2
from google.protobuf.message import Message

from common.local.emulators.kit.locations import Locations
from common.local.emulators.kit.rest import RestServer, Route
from common.local.emulators.scheduler.engine import SchedulerEngine

_LOCATION = "projects/*/locations/*"
_JOB = f"{_LOCATION}/jobs/*"


def _raw(fn: Callable[[Any], Any], request_cls: Any) -> Callable[[Message], Message]:
    """An engine call (proto-plus in and out) as a call on raw protobufs."""

    def call(request: Message) -> Message:
        answer = fn(request_cls.wrap(request))
        return type(answer).pb(answer) if isinstance(answer, proto.Message) else answer

    return call


def routes(engine: SchedulerEngine, locations: Locations) -> list[Route]:
    """The v1 HTTP rules the emulator serves, as the REST reference (cloud.google.com/scheduler/docs/reference/rest)
    gives them; ``tests/emulators/test_conformance.py`` checks them against the rules the stock client sends."""
    s, e = scheduler_v1, engine

    def route(verb: str, template: str, rpc: str, fn: Callable[[Any], Any], req: Any, body: str | None = None) -> Route:
        return Route(verb, template, rpc, _raw(fn, req), req.pb(), body)

    return [
        Route("GET", "/v1/{name=projects/*}/locations", "ListLocations", locations.list_locations,
              locations_pb2.ListLocationsRequest),
        Route("GET", f"/v1/{{name={_LOCATION}}}", "GetLocation", locations.get_location,
              locations_pb2.GetLocationRequest),
        route("GET", f"/v1/{{parent={_LOCATION}}}/jobs", "ListJobs", e.list_jobs, s.ListJobsRequest),
        route("GET", f"/v1/{{name={_JOB}}}", "GetJob", e.get_job, s.GetJobRequest),
        route("POST", f"/v1/{{parent={_LOCATION}}}/jobs", "CreateJob", e.create_job, s.CreateJobRequest, "job"),
        route("PATCH", f"/v1/{{job.name={_JOB}}}", "UpdateJob", e.update_job, s.UpdateJobRequest, "job"),
        route("DELETE", f"/v1/{{name={_JOB}}}", "DeleteJob", e.delete_job, s.DeleteJobRequest),
        route("POST", f"/v1/{{name={_JOB}}}:pause", "PauseJob", e.pause_job, s.PauseJobRequest, "*"),
        route("POST", f"/v1/{{name={_JOB}}}:resume", "ResumeJob", e.resume_job, s.ResumeJobRequest, "*"),
        route("POST", f"/v1/{{name={_JOB}}}:run", "RunJob", e.run_job, s.RunJobRequest, "*"),
    ]  # fmt: skip


def serve_rest(engine: SchedulerEngine, locations: Locations, host: str, port: int) -> RestServer:
    """Serve the REST front on ``host:port`` (0: a free port) from a daemon thread."""
    return RestServer(host, port, routes(engine, locations), name="Cloud Scheduler")
