"""The Cloud Tasks emulator's REST front: Cloud Tasks v2's HTTP rules (JSON over HTTP/1.1) on a TasksEngine."""

from __future__ import annotations

from google.cloud import tasks_v2
from google.cloud.location import locations_pb2

from common.local.emulators.kit.locations import Locations
from common.local.emulators.kit.rest import RestServer, Route
from common.local.emulators.tasks.engine import TasksEngine

_LOCATION = "projects/*/locations/*"
_QUEUE = f"{_LOCATION}/queues/*"
_TASK = f"{_QUEUE}/tasks/*"


def routes(engine: TasksEngine, locations: Locations) -> list[Route]:
    """The v2 HTTP rules the emulator serves, as the REST reference (cloud.google.com/tasks/docs/reference/rest)
    gives them; ``tests/emulators/test_conformance.py`` checks them against the rules the stock client sends."""
    t, e = tasks_v2, engine
    return [
        Route("GET", "/v2/{name=projects/*}/locations", "ListLocations", locations.list_locations,
              locations_pb2.ListLocationsRequest),
        Route("GET", f"/v2/{{name={_LOCATION}}}", "GetLocation", locations.get_location,
              locations_pb2.GetLocationRequest),
        Route("GET", f"/v2/{{parent={_LOCATION}}}/queues", "ListQueues", e.list_queues, t.ListQueuesRequest.pb()),
        Route("GET", f"/v2/{{name={_QUEUE}}}", "GetQueue", e.get_queue, t.GetQueueRequest.pb()),
        Route("POST", f"/v2/{{parent={_LOCATION}}}/queues", "CreateQueue", e.create_queue,
              t.CreateQueueRequest.pb(), "queue"),
        Route("PATCH", f"/v2/{{queue.name={_QUEUE}}}", "UpdateQueue", e.update_queue,
              t.UpdateQueueRequest.pb(), "queue"),
        Route("DELETE", f"/v2/{{name={_QUEUE}}}", "DeleteQueue", e.delete_queue, t.DeleteQueueRequest.pb()),
        Route("POST", f"/v2/{{name={_QUEUE}}}:purge", "PurgeQueue", e.purge_queue, t.PurgeQueueRequest.pb(), "*"),
        Route("POST", f"/v2/{{name={_QUEUE}}}:pause", "PauseQueue", e.pause_queue, t.PauseQueueRequest.pb(), "*"),
        Route("POST", f"/v2/{{name={_QUEUE}}}:resume", "ResumeQueue", e.resume_queue,
              t.ResumeQueueRequest.pb(), "*"),
        Route("GET", f"/v2/{{parent={_QUEUE}}}/tasks", "ListTasks", e.list_tasks, t.ListTasksRequest.pb()),
        Route("GET", f"/v2/{{name={_TASK}}}", "GetTask", e.get_task, t.GetTaskRequest.pb()),
        Route("POST", f"/v2/{{parent={_QUEUE}}}/tasks", "CreateTask", e.create_task, t.CreateTaskRequest.pb(), "*"),
        Route("DELETE", f"/v2/{{name={_TASK}}}", "DeleteTask", e.delete_task, t.DeleteTaskRequest.pb()),
        Route("POST", f"/v2/{{name={_TASK}}}:run", "RunTask", e.run_task, t.RunTaskRequest.pb(), "*"),
    ]  # fmt: skip


def serve_rest(engine: TasksEngine, locations: Locations, host: str, port: int) -> RestServer:
    """Serve the REST front on ``host:port`` (0: a free port) from a daemon thread."""
    return RestServer(host, port, routes(engine, locations), name="Cloud Tasks")
