"""A Pub/Sub push proxy in front of the status function: duplicates and reorders deliveries.

The Pub/Sub emulator pushes to the proxy (the ``status-push`` subscription's endpoint is changed with the
stock client's ``modify_push_config``) and the proxy forwards to the status function. That is where Pub/Sub's
own at-least-once, unordered delivery happens, so no production code carries a hook for it:

- **duplicates**: every push is forwarded ``copies`` times (at once, or one after the other when not
  ``concurrent``), the extra copies under a new message id
  (as a publisher retry after a lost ack would make); and ``late_copy`` s after the answer, once more with the
  same message id (a redelivery after a lost ack), by then usually after the job is terminal;
- **reordering**: the first push of every ``started``/``progress``/``retrying`` event is refused (503), so the
  emulator redelivers it about a second later, after the job's terminal event;
- **an outage in front of the function** is just observed: each answer's status and latency is recorded.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson

EARLY = ("started", "progress", "retrying")


class PushProxy:
    def __init__(
        self,
        target: str,
        *,
        copies: int = 1,
        concurrent: bool = True,
        reorder: bool = False,
        late_copy: float | None = None,
    ) -> None:
        self.target = target.rstrip("/")
        self.copies, self.concurrent, self.reorder, self.late_copy = copies, concurrent, reorder, late_copy
        self.pushes = 0  # pushes received from the emulator
        self.refused = 0  # first pushes refused to reorder them
        self.forwarded = 0  # requests sent to the status function (copies included)
        self.answers: list[tuple[int, float]] = []  # (status or 0 for no answer, seconds) per forward
        self.order: dict[str, list[str]] = defaultdict(list)  # job -> event types, in the order applied
        self.seen: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()  # per job: refused pushes, extra and late copies
        self.refused_of: Counter[str] = Counter()  # per job
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        self._http = httpx.Client(timeout=70)
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="push-copy")
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = proxy.handle(self.path, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="push-proxy", daemon=True)

    # -------------------------------------------------------------------------------------------------
    def handle(self, path: str, body: bytes) -> int:
        envelope = orjson.loads(body)
        message = envelope.get("message", {})
        attributes = message.get("attributes", {})
        kind = str(attributes.get("ce_type", "")).rsplit(".", 1)[-1]
        job = str(attributes.get("job_id", ""))
        with self._lock:
            self.pushes += 1
            self.seen[message.get("messageId", "")] += 1
            first = self.seen[message.get("messageId", "")] == 1
            if self.reorder and first and kind in EARLY:
                self.refused += 1
                self.refused_of[job] += 1
                self.injected[job] += 1
                return 503
            self.injected[job] += self.copies - 1 + (1 if self.late_copy is not None and first else 0)
        bodies = [body]
        for i in range(1, self.copies):
            copy = {**envelope, "message": {**message, "messageId": f"{message.get('messageId')}-copy{i}"}}
            bodies.append(orjson.dumps(copy))
        if self.concurrent:
            statuses = list(self._pool.map(lambda b: self.forward(path, b), bodies))
        else:
            statuses = [self.forward(path, b) for b in bodies]
        with self._lock:
            self.order[job].append(kind)
            if self.late_copy is not None and first:
                timer = threading.Timer(self.late_copy, self.forward, args=(path, body))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
        return 204 if all(200 <= s < 300 for s in statuses) else 503

    def forward(self, path: str, body: bytes) -> int:
        started = time.monotonic()
        try:
            status = self._http.post(
                self.target + path, content=body, headers={"Content-Type": "application/json"}
            ).status_code
        except httpx.HTTPError:
            status = 0
        with self._lock:
            self.forwarded += 1
            self.answers.append((status, time.monotonic() - started))
        return status

    def wait_idle(self, timeout: float = 15.0) -> None:
        """Wait (bounded) for every late copy to have been sent."""
        deadline = time.monotonic() + timeout
        for timer in list(self._timers):
            timer.join(max(0.0, deadline - time.monotonic()))

    @property
    def rejected(self) -> int:
        """Forwards the status function did not answer 2xx (Pub/Sub would redeliver them)."""
        return sum(1 for status, _ in self.answers if not 200 <= status < 300)

    # -------------------------------------------------------------------------------------------------
    def start(self, subscriber: Any, project: str) -> PushProxy:
        """Serve, and point the ``status-push`` subscription at the proxy."""
        self._thread.start()
        self._point(subscriber, project, self.url)
        return self

    def stop(self, subscriber: Any, project: str, status_url: str) -> None:
        """Point the subscription back at the status function, then stop."""
        self._point(subscriber, project, status_url)
        self.wait_idle()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._pool.shutdown(wait=True)
        self._http.close()

    @staticmethod
    def _point(subscriber: Any, project: str, base: str) -> None:
        subscriber.modify_push_config(
            request={
                "subscription": f"projects/{project}/subscriptions/status-push",
                "push_config": {"push_endpoint": f"{base}/projects/{project}/topics/ingest-events"},
            }
        )
