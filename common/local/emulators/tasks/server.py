"""The Cloud Tasks emulator's gRPC server: ``google.cloud.tasks.v2.CloudTasks`` in front of a TasksEngine."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent import futures
from datetime import datetime
from typing import Any

import grpc
from google.cloud import tasks_v2

from common.local.emulators._grpc import locations_handler, unary
from common.local.emulators.kit.admin import AdminServer
from common.local.emulators.kit.clock import Clock
from common.local.emulators.kit.endpoints import Endpoints
from common.local.emulators.kit.locations import DEFAULT_LOCATIONS, Locations
from common.local.emulators.kit.rest import RestServer
from common.local.emulators.oidc import LocalSigner
from common.local.emulators.tasks.admin import serve_admin
from common.local.emulators.tasks.config import MIN_DISPATCH_DEADLINE
from common.local.emulators.tasks.delivery import log
from common.local.emulators.tasks.engine import TasksEngine
from common.local.emulators.tasks.rest import serve_rest

SERVICE = "google.cloud.tasks.v2.CloudTasks"


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())


class TasksEmulator(Endpoints):
    """An in-memory Cloud Tasks server on ``host:port`` (0 picks a free port) that dispatches HTTP tasks.

    The keyword arguments are :class:`~common.local.emulators.tasks.engine.TasksEngine`'s; ``rest_port`` also
    serves the REST API (:mod:`common.local.emulators.tasks.rest`, 0 picks a free port), ``admin_port``
    ``POST /advance`` and ``GET /healthz`` (:mod:`common.local.emulators.tasks.admin`), and ``locations`` is what
    ListLocations answers.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        dedup_window: float = 3600.0,
        signer: LocalSigner | None = None,
        min_dispatch_deadline: float = MIN_DISPATCH_DEADLINE,
        duplicate_deliveries: int = 1,
        clock: Clock | datetime | None = None,
        admin_port: int | None = None,
        rest_port: int | None = None,
        locations: tuple[str, ...] = DEFAULT_LOCATIONS,
    ) -> None:
        self.host = host
        self.port = port
        self.admin_port = admin_port
        self.rest_port = rest_port
        self.locations = Locations(locations)
        self.engine = TasksEngine(
            dedup_window=dedup_window,
            signer=signer,
            min_dispatch_deadline=min_dispatch_deadline,
            duplicate_deliveries=duplicate_deliveries,
            clock=clock,
        )
        self._server: grpc.Server | None = None
        self._admin: AdminServer | None = None
        self._rest: RestServer | None = None

    # lifecycle ---------------------------------------------------------------------------------

    def start(self) -> int:
        """Bind, start serving and dispatching; returns the bound port."""
        if self._server is not None:
            raise RuntimeError("the emulator is already started")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="tasks-emu-rpc"),
            options=[("grpc.so_reuseport", 0)],
        )
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(SERVICE, self._handlers()),
                locations_handler(self.locations, log=log),
            )
        )
        port = server.add_insecure_port(f"{self.host}:{self.port}")
        if not port:
            raise RuntimeError(f"cannot bind {self.host}:{self.port}")
        self.port = port
        self.engine.start()
        server.start()
        self._server = server
        if self.admin_port is not None:
            self._admin = serve_admin(self.engine, self.host, self.admin_port)
            self.admin_port = self._admin.port
        if self.rest_port is not None:
            self._rest = serve_rest(self.engine, self.locations, self.host, self.rest_port)
            self.rest_port = self._rest.port
        log.info("Cloud Tasks emulator listening on %s", self.address)
        return port

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and dispatching; waits at most about ``timeout`` s for threads to end."""
        if self._server is None:
            return
        server, self._server = self._server, None
        deadline = time.monotonic() + timeout
        if self._admin is not None:
            self._admin.stop(max(0.1, deadline - time.monotonic()))
            self._admin = None
        if self._rest is not None:
            self._rest.stop(max(0.1, deadline - time.monotonic()))
            self._rest = None
        server.stop(grace=min(1.0, timeout / 2)).wait(max(0.0, deadline - time.monotonic()))
        self.engine.stop(deadline)

    def __enter__(self) -> TasksEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queue is empty and nothing is in flight; False if ``timeout`` s passed first."""
        return self.engine.wait_idle(timeout)

    def settle(self, timeout: float = 5.0) -> bool:
        """Wait until no attempt is in flight; False if ``timeout`` s passed first."""
        return self.engine.settle(timeout)

    def advance(self, seconds: float) -> None:
        """Move the clock on, after the attempts in flight end (see :meth:`TasksEngine.advance`)."""
        self.engine.advance(seconds)

    # gRPC plumbing -----------------------------------------------------------------------------

    def _handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        t, e = tasks_v2, self.engine
        table: list[tuple[str, Callable[[Any], Any], Any]] = [
            ("ListQueues", e.list_queues, t.ListQueuesRequest),
            ("GetQueue", e.get_queue, t.GetQueueRequest),
            ("CreateQueue", e.create_queue, t.CreateQueueRequest),
            ("UpdateQueue", e.update_queue, t.UpdateQueueRequest),
            ("DeleteQueue", e.delete_queue, t.DeleteQueueRequest),
            ("PurgeQueue", e.purge_queue, t.PurgeQueueRequest),
            ("PauseQueue", e.pause_queue, t.PauseQueueRequest),
            ("ResumeQueue", e.resume_queue, t.ResumeQueueRequest),
            ("ListTasks", e.list_tasks, t.ListTasksRequest),
            ("GetTask", e.get_task, t.GetTaskRequest),
            ("CreateTask", e.create_task, t.CreateTaskRequest),
            ("DeleteTask", e.delete_task, t.DeleteTaskRequest),
            ("RunTask", e.run_task, t.RunTaskRequest),
        ]
        return {name: unary(name, fn, req, _serialize, log=log, convert=req.pb) for name, fn, req in table}
