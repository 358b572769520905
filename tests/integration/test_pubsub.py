"""Job events published with the job id as ordering key, and the ordered ``status-push``, on the Pub/Sub emulator."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from google.api_core.exceptions import NotFound
from werkzeug.serving import make_server

from common.core.errors import TransientError
from common.core.events import Event, EventData, EventType
from common.gcp import clients
from common.gcp.pubsub import publish
from common.local.stack import status_push_subscription

JOB = "noop-ordering-test"


def event(etype: EventType, job_id: str = JOB) -> Event:
    return Event.make(etype, EventData(job_id=job_id, source="noop"))


def pull(subscription: str, *, expect: int, timeout: float = 10.0) -> list[Any]:
    """Pull (and ack) raw messages until ``expect`` arrived or ``timeout`` passed."""
    sub, out = clients.subscriber(), []
    deadline = time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        response = sub.pull(request={"subscription": subscription, "max_messages": 50}, timeout=5)
        received = response.received_messages
        if received:
            sub.acknowledge(request={"subscription": subscription, "ack_ids": [m.ack_id for m in received]})
        out.extend(m.message for m in received)
    return out


def make_topic(project: str) -> tuple[str, str]:
    name, sub = f"projects/{project}/topics/ingest-events", f"projects/{project}/subscriptions/test-pull"
    clients.publisher().create_topic(name=name)
    clients.subscriber().create_subscription(request={"name": sub, "topic": name, "enable_message_ordering": True})
    return name, sub


def test_each_event_carries_its_job_id_as_ordering_key(topic: tuple[str, str]) -> None:
    publish(event(EventType.started))
    publish(event(EventType.succeeded))
    publish(event(EventType.started, job_id="noop-other-job"))
    messages = pull(topic[1], expect=3)
    assert sorted((m.ordering_key, m.attributes["job_id"]) for m in messages) == [
        ("noop-ordering-test", "noop-ordering-test"),
        ("noop-ordering-test", "noop-ordering-test"),
        ("noop-other-job", "noop-other-job"),
    ]


def test_a_failed_publish_leaves_its_key_resumed_for_the_next_attempt(gcp: str) -> None:
    """With ordering on, the client pauses a key after a failure; the task's retry must be able to publish."""
    with pytest.raises(TransientError, match="could not publish"):
        publish(event(EventType.started))  # no topic yet: NotFound, twice
    _, sub = make_topic(gcp)
    publish(event(EventType.started))  # raises PublishToPausedOrderingKeyException if the key stayed paused
    assert [Event.from_bytes(m.data).id for m in pull(sub, expect=1)] == [f"{JOB}.1.started.0"]


def test_a_key_paused_by_an_earlier_failure_is_resumed_and_the_publish_retried(
    gcp: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another publish of the same job on this instance failed and paused the key: this one still goes out."""
    topic = f"projects/{gcp}/topics/ingest-events"
    with pytest.raises(NotFound):
        clients.publisher().publish(topic, b"{}", ordering_key=JOB).result(timeout=10)
    _, sub = make_topic(gcp)
    with caplog.at_level(logging.WARNING, logger="tributary.publish"):
        publish(event(EventType.succeeded))
    assert "PublishToPausedOrderingKeyException" in caplog.text, "the first attempt met the paused key"
    assert [Event.from_bytes(m.data).id for m in pull(sub, expect=1)] == [f"{JOB}.1.succeeded.0"]


# ---- the status-push subscription the local stack creates (deploy.sh creates it ordered too) ----------
class Endpoint:
    """A push endpoint that holds each push ``hold`` s, refuses the first pushes of the ids in ``refuse`` (as
    many times as the count says), and records (event id, arrival, answer time, status)."""

    def __init__(self, hold: float, refuse: dict[str, int]) -> None:
        self.hold, self.refuse = hold, dict(refuse)
        self.log: list[tuple[str, float, float, int]] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        import base64

        arrived = time.monotonic()
        size = int(environ.get("CONTENT_LENGTH") or 0)
        envelope = orjson.loads(environ["wsgi.input"].read(size))
        event_id = Event.from_bytes(base64.b64decode(envelope["message"]["data"])).id
        with self.lock:
            refused = self.refuse.get(event_id, 0) > 0
            if refused:
                self.refuse[event_id] -= 1
        if not refused:
            time.sleep(self.hold)
        status = 503 if refused else 204
        with self.lock:
            self.log.append((event_id, arrived, time.monotonic(), status))
        start_response(f"{status} X", [("Content-Length", "0")])
        return []


@pytest.fixture
def endpoint() -> Iterator[tuple[str, Endpoint]]:
    # Refused twice: the emulator redelivers about 1 s after each refusal, so this job waits 2 s or more,
    # far longer than the other job's two 0.3 s pushes even on a loaded machine.
    app = Endpoint(hold=0.3, refuse={f"{JOB}.1.started.0": 2})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", app
    server.shutdown()


def test_status_push_delivers_one_job_s_events_one_after_another(gcp: str, endpoint: tuple[str, Endpoint]) -> None:
    """What the ordering buys (docs/google-quirks.md): a job's next event is pushed only once the previous one
    is acked, even when that took a refusal and a redelivery; other jobs are not held up."""
    url, app = endpoint
    topic = f"projects/{gcp}/topics/ingest-events"
    clients.publisher().create_topic(name=topic)
    request = status_push_subscription(topic, f"{url}/{topic}")
    created = clients.subscriber().create_subscription(
        request={"name": f"projects/{gcp}/subscriptions/status-push", **request}
    )
    assert created.enable_message_ordering
    for etype in (EventType.started, EventType.succeeded):
        publish(event(etype))
        publish(event(etype, job_id="noop-other-job"))
    deadline = time.monotonic() + 20
    while sum(1 for *_, status in app.log if status == 204) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    by_id: dict[str, list[tuple[float, float, int]]] = {}
    for event_id, arrived, answered, status in app.log:
        by_id.setdefault(event_id, []).append((arrived, answered, status))
    started, succeeded = by_id[f"{JOB}.1.started.0"], by_id[f"{JOB}.1.succeeded.0"]
    assert [s for *_, s in started] == [503, 503, 204], "refused twice, then redelivered"
    assert succeeded[0][0] >= started[-1][1], "succeeded was pushed only after started was acked"
    other_started, other_succeeded = by_id["noop-other-job.1.started.0"], by_id["noop-other-job.1.succeeded.0"]
    assert other_succeeded[0][0] >= other_started[-1][1]
    assert other_succeeded[-1][1] < succeeded[0][0], "the other job went through while this one waited"
