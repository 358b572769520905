"""What the REST, stock-client, conformance and gcloud tests share: a recording HTTP target and client factories."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import scheduler_v1, tasks_v2


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


class Receiver:
    """An HTTP server on 127.0.0.1 that records every request and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.hits: list[Hit] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                hit = Hit(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with receiver.cond:
                    receiver.hits.append(hit)
                    receiver.cond.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Hit]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.hits) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} requests, got {len(self.hits)}")
                self.cond.wait(left)
            return list(self.hits)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def rest_options(url: str) -> dict[str, Any]:
    """The stock client over REST: ``transport="rest"``, the emulator's URL, anonymous credentials."""
    return {
        "transport": "rest",
        "client_options": ClientOptions(api_endpoint=url),
        "credentials": AnonymousCredentials(),
    }


def tasks_client(transport: str, emu: Any) -> tasks_v2.CloudTasksClient:
    """The stock Cloud Tasks client over ``"rest"`` or ``"grpc"`` (a plaintext channel) to ``emu``."""
    if transport == "rest":
        return tasks_v2.CloudTasksClient(**rest_options(emu.rest_url))
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(emu.address)))


def scheduler_client(transport: str, emu: Any) -> scheduler_v1.CloudSchedulerClient:
    """The stock Cloud Scheduler client over ``"rest"`` or ``"grpc"`` (a plaintext channel) to ``emu``."""
    if transport == "rest":
        return scheduler_v1.CloudSchedulerClient(**rest_options(emu.rest_url))
    from google.cloud.scheduler_v1.services.cloud_scheduler.transports import CloudSchedulerGrpcTransport

    channel = grpc.insecure_channel(emu.address)
    return scheduler_v1.CloudSchedulerClient(transport=CloudSchedulerGrpcTransport(channel=channel))
