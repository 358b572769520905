"""The Cloud Scheduler emulator's gRPC server: ``google.cloud.scheduler.v1.CloudScheduler`` in front of an engine."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent import futures
from datetime import datetime
from typing import Any

import grpc
from google.cloud import scheduler_v1
from google.protobuf import empty_pb2

from common.local.emulators._grpc import locations_handler, unary
from common.local.emulators.kit.admin import AdminServer
from common.local.emulators.kit.clock import Clock
from common.local.emulators.kit.endpoints import Endpoints
from common.local.emulators.kit.locations import DEFAULT_LOCATIONS, Locations
from common.local.emulators.kit.rest import RestServer
from common.local.emulators.oidc import LocalSigner
from common.local.emulators.scheduler.admin import serve_admin
from common.local.emulators.scheduler.engine import SchedulerEngine
from common.local.emulators.scheduler.firing import log
from common.local.emulators.scheduler.jobs import STOP_BUDGET_SECONDS, FireRecord
from common.local.emulators.scheduler.rest import serve_rest

SERVICE = "google.cloud.scheduler.v1.CloudScheduler"


class SchedulerEmulator(Endpoints):
    """An in-process Cloud Scheduler: a gRPC server on ``host:port`` (0 picks a free port) in front of a
    :class:`~common.local.emulators.scheduler.engine.SchedulerEngine` (``signer``, ``clock`` and ``fire`` are
    its), with ``rest_port`` the REST API (:mod:`common.local.emulators.scheduler.rest`, 0 picks a free port), and
    with ``admin_port`` the time control of :mod:`common.local.emulators.scheduler.admin`. ``locations`` is what
    ListLocations answers.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        signer: LocalSigner | None = None,
        clock: Clock | datetime | None = None,
        fire: bool = True,
        admin_port: int | None = None,
        rest_port: int | None = None,
        locations: tuple[str, ...] = DEFAULT_LOCATIONS,
        pubsub_emulator_host: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.admin_port = admin_port
        self.rest_port = rest_port
        self.locations = Locations(locations)
        self.engine = SchedulerEngine(signer=signer, clock=clock, fire=fire, pubsub_emulator_host=pubsub_emulator_host)
        self._server: grpc.Server | None = None
        self._admin: AdminServer | None = None
        self._rest: RestServer | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> int:
        """Start serving; returns the gRPC port (useful with ``port=0``)."""
        if self._server is not None:
            return self.port
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="scheduler-grpc"))
        server.add_generic_rpc_handlers((self._handlers(), locations_handler(self.locations, log=log)))
        bound = server.add_insecure_port(f"{self.host}:{self.port}")
        if bound == 0:
            raise RuntimeError(f"cannot bind the scheduler emulator to {self.host}:{self.port}")
        self.engine.start()
        server.start()
        self._server = server
        self.port = bound
        if self.admin_port is not None:
            self.start_admin(self.admin_port)
        if self.rest_port is not None:
            self._rest = serve_rest(self.engine, self.locations, self.host, self.rest_port)
            self.rest_port = self._rest.port
        log.info("scheduler emulator listening on %s", self.address)
        return bound

    def start_admin(self, port: int = 0) -> int:
        """Serve ``POST /advance {"seconds": N}`` and ``GET /healthz`` on ``host:port``; returns the port."""
        if self._admin is None:
            self._admin = serve_admin(self.engine, self.host, port)
            self.admin_port = self._admin.port
        return self._admin.port

    def stop(self) -> None:
        """Stop serving and firing; joins every thread within a few seconds."""
        deadline = time.monotonic() + STOP_BUDGET_SECONDS
        self.engine.stop(deadline)
        if self._admin is not None:
            self._admin.stop(deadline - time.monotonic())
            self._admin = None
        if self._rest is not None:
            self._rest.stop(deadline - time.monotonic())
            self._rest = None
        if self._server is not None:
            self._server.stop(grace=0.5).wait(timeout=max(0.1, deadline - time.monotonic()))
            self._server = None

    def __enter__(self) -> SchedulerEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the engine's time and records

    def now(self) -> datetime:
        return self.engine.now()

    @property
    def history(self) -> list[FireRecord]:
        """Every fire record so far (the last 10,000), oldest first."""
        return self.engine.history

    def advance(self, seconds: float) -> list[FireRecord]:
        """Move the clock on and fire what falls due (:meth:`SchedulerEngine.advance`)."""
        return self.engine.advance(seconds)

    # ------------------------------------------------------------------ gRPC wiring

    def _handlers(self) -> grpc.GenericRpcHandler:
        e = self.engine

        def rpc(fn: Callable[[Any], Any], request_cls: Any, serialize: Callable[[Any], bytes]) -> Any:
            return unary(f"scheduler.{fn.__name__}", fn, request_cls, serialize, log=log)

        job_out = scheduler_v1.Job.serialize
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ListJobs": rpc(e.list_jobs, scheduler_v1.ListJobsRequest, scheduler_v1.ListJobsResponse.serialize),
                "GetJob": rpc(e.get_job, scheduler_v1.GetJobRequest, job_out),
                "CreateJob": rpc(e.create_job, scheduler_v1.CreateJobRequest, job_out),
                "UpdateJob": rpc(e.update_job, scheduler_v1.UpdateJobRequest, job_out),
                "DeleteJob": rpc(e.delete_job, scheduler_v1.DeleteJobRequest, empty_pb2.Empty.SerializeToString),
                "PauseJob": rpc(e.pause_job, scheduler_v1.PauseJobRequest, job_out),
                "ResumeJob": rpc(e.resume_job, scheduler_v1.ResumeJobRequest, job_out),
                "RunJob": rpc(e.run_job, scheduler_v1.RunJobRequest, job_out),
            },
        )
