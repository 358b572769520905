"""A Pub/Sub push proxy in front of the status function: duplicates and reorders deliveries.

The Pub/Sub emulator pushes to the proxy (the ``status-push`` subscription's endpoint is changed with the
stock client's ``modify_push_config``) and the proxy forwards to the status function. That is where Pub/Sub's
own at-least-once, unordered delivery happens, so no production code carries a hook for it:

- **duplicates**: every push is forwarded ``copies`` times (at once, or one after the other when not
  ``concurrent``), the extra copies under a new message id
  (as a publisher retry after a lost ack would make); and ``late_copy`` s after the answer, once more with the
  same message id (a redelivery after a lost ack), by then usually after the job is terminal;
- **reordering**: the first push of every ``started``/``progress``/``retrying`` event is acked to Pub/Sub and
  forwarded ``defer`` s later (again until the status function answers 2xx), after the job's terminal event.
  Deferred pushes go out one at a time, and one job's pushes never overlap (its copies do): a deferred
  ``started`` forwarded while the same job's terminal event is being applied would be four transactions on
  one document, which the Firestore emulator resolves only by lock timeouts, and the two retry loops stay in
  step for minutes. Pub/Sub with ordering never sends them together.
  Refusing it would not reorder anything: ``status-push`` delivers with message ordering, so the emulator
  holds a job's later events until the refused one is redelivered and acked (docs/google-quirks.md). Pub/Sub
  still delivers out of order in the cloud (redeliveries, publishes from several instances), which is what
  this stands for;
- **an outage in front of the function** is just observed: each answer's status and latency is recorded.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor, wait
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
        defer: float = 1.5,
    ) -> None:
        self.target = target.rstrip("/")
        self.copies, self.concurrent, self.reorder, self.late_copy = copies, concurrent, reorder, late_copy
        self.defer = defer
        self.pushes = 0  # pushes received from the emulator
        self.deferred = 0  # first pushes acked and forwarded later, to reorder them
        self.forwarded = 0  # requests sent to the status function (copies included)
        self.answers: list[tuple[int, float]] = []  # (status or 0 for no answer, seconds) per forward
        self.order: dict[str, list[str]] = defaultdict(list)  # job -> event types, in the order applied
        self.seen: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()  # per job: refused pushes, extra and late copies
        self.deferred_of: Counter[str] = Counter()  # per job
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        self._http = httpx.Client(timeout=70)
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="push-copy")
        self._deferred = ThreadPoolExecutor(max_workers=1, thread_name_prefix="push-deferred")
        self._job_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._pending: list[Future[None]] = []
        self._closing = False
        #: Set: every push is answered 503 unforwarded (Pub/Sub delivers it again later), e.g. while a test puts
        #: back the documents a restarted Firestore emulator lost.
        self.held = threading.Event()
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
        if self.held.is_set():
            return 503
        envelope = orjson.loads(body)
        message = envelope.get("message", {})
        attributes = message.get("attributes", {})
        kind = str(attributes.get("ce_type", "")).rsplit(".", 1)[-1]
        job = str(attributes.get("job_id", ""))
        with self._lock:
            self.pushes += 1
            self.seen[message.get("messageId", "")] += 1
            first = self.seen[message.get("messageId", "")] == 1
            defer = self.reorder and first and kind in EARLY
            if defer:
                self.deferred += 1
                self.deferred_of[job] += 1
                self.injected[job] += 1
        if defer:
            due = time.monotonic() + self.defer
            future = self._deferred.submit(self._deliver_deferred, due, path, body, envelope, job, kind)
            with self._lock:
                self._pending.append(future)
            return 204
        return self._deliver(path, body, envelope, job, kind, first)

    def _deliver(self, path: str, body: bytes, envelope: dict[str, Any], job: str, kind: str, first: bool) -> int:
        """Forward one push (and its copies) to the status function; 204 when every forward was answered 2xx."""
        message = envelope.get("message", {})
        with self._lock:
            self.injected[job] += self.copies - 1 + (1 if self.late_copy is not None and first else 0)
        bodies = [body]
        for i in range(1, self.copies):
            copy = {**envelope, "message": {**message, "messageId": f"{message.get('messageId')}-copy{i}"}}
            bodies.append(orjson.dumps(copy))
        with self._lock:
            job_lock = self._job_locks[job]
        with job_lock:  # one push of a job at a time (its copies at once), as ordered Pub/Sub delivers
            if self.concurrent:
                statuses = list(self._pool.map(lambda b: self.forward(path, b), bodies))
            else:
                statuses = [self.forward(path, b) for b in bodies]
        with self._lock:
            self.order[job].append(kind)
        if self.late_copy is not None and first:
            self._later(self.late_copy, self.forward, path, body)
        return 204 if all(200 <= s < 300 for s in statuses) else 503

    def _deliver_deferred(
        self, due: float, path: str, body: bytes, envelope: dict[str, Any], job: str, kind: str
    ) -> None:
        """A deferred push, at ``due``: forwarded until answered 2xx (it was acked to Pub/Sub, which will not
        redeliver it), a second apart as the emulator redelivers."""
        time.sleep(max(0.0, due - time.monotonic()))
        for attempt in range(30):
            if self._closing or self._deliver(path, body, envelope, job, kind, attempt == 0) == 204:
                return
            time.sleep(1.0)

    def _later(self, delay: float, fn: Any, *args: Any) -> None:
        timer = threading.Timer(delay, fn, args=args)
        timer.daemon = True
        with self._lock:
            self._timers.append(timer)
        timer.start()

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
        """Wait (bounded) for every deferred push and late copy to have been sent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                deferred = [f for f in self._pending if not f.done()]
                timers = [t for t in self._timers if t.is_alive()]
            if deferred:
                wait(deferred[:1], timeout=max(0.0, deadline - time.monotonic()))
            elif timers:
                timers[0].join(max(0.0, deadline - time.monotonic()))
            else:
                return

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
        self._closing = True
        self._deferred.shutdown(wait=True, cancel_futures=True)
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
