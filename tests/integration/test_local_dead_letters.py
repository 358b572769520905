"""The local stack's dead-letter policy, on the real Pub/Sub emulator: what the emulator does with one, and how
the local push target (``common.local.deliveries``) bounds a push that keeps failing as deploy.sh's policy does."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from functions_framework import create_app
from typer.testing import CliRunner
from werkzeug.serving import make_server

import common.runtime.status
from common.core.events import Event, EventData, EventType
from common.gcp import clients, names
from common.gcp.pubsub import MAX_DELIVERY_ATTEMPTS, publish
from common.local.deliveries import PUSHED
from common.local.provisioning import provision
from common.ops.cli import app as cli
from common.settings import reset_settings


def serve(app: Callable[..., Any]) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# ---- what the emulator does with a dead-letter policy (docs/google-quirks.md) -------------------------------
class Refusing:
    """A push endpoint that answers 500 to data ``poison`` and 204 to anything else; records (path, data)."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, bytes]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        envelope = orjson.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        data = base64.b64decode(envelope["message"]["data"])
        self.pushes.append((environ["PATH_INFO"], data))
        start_response("500 X" if data == b"poison" else "204 X", [("Content-Length", "0")])
        return []


@pytest.fixture
def refusing() -> Iterator[tuple[str, Refusing]]:
    app = Refusing()
    for url in serve(app):
        yield url, app


def test_the_emulator_forwards_dead_letters_of_an_unordered_subscription_only(
    gcp: str, refusing: tuple[str, Refusing]
) -> None:
    """Watches the emulator: unordered, a push failing ``max_delivery_attempts`` times is forwarded; ordered, it is
    pushed as often and then lost, and the next message with its ordering key is never pushed."""
    url, endpoint = refusing
    pub, sub = clients.publisher(), clients.subscriber()
    topic, dead = names.topic_path(), names.dead_topic_path()
    for t in (topic, dead):
        pub.create_topic(name=t)
    sub.create_subscription(request={"name": names.dead_subscription_path(), "topic": dead})
    for ordered in (False, True):
        sub.create_subscription(
            request={
                "name": names.subscription_path(f"push-{ordered}".lower()),
                "topic": topic,
                "push_config": {"push_endpoint": f"{url}/{ordered}"},
                "enable_message_ordering": ordered,
                "dead_letter_policy": {"dead_letter_topic": dead, "max_delivery_attempts": 5},
            }
        )
    for data in (b"poison", b"next"):
        pub.publish(topic, data, ordering_key="job").result(timeout=10)

    def pushes(path: str, data: bytes) -> int:
        return endpoint.pushes.count((path, data))

    assert wait_for(lambda: pushes("/False", b"poison") >= 5 and pushes("/True", b"poison") >= 5, 30)
    dead_letters: list[Any] = []

    def forwarded() -> bool:
        dead_letters.extend(pull(names.dead_subscription_path()))
        return bool(dead_letters)

    assert wait_for(forwarded, 10)
    time.sleep(3)  # three of the emulator's redelivery intervals: time for a sixth push or a second dead letter
    dead_letters.extend(pull(names.dead_subscription_path()))
    assert pushes("/False", b"poison") == pushes("/True", b"poison") == 5, "five deliveries each, no more"
    (message,) = dead_letters
    assert message.data == b"poison"
    assert message.attributes["CloudPubSubDeadLetterSourceSubscription"] == "push-false"
    assert message.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert pushes("/False", b"next") == 1, "unordered: the next message went through at once"
    assert pushes("/True", b"next") == 0, "ordered: the poison message holds its key after it is dropped"


def pull(subscription: str) -> list[Any]:
    response = clients.subscriber().pull(request={"subscription": subscription, "max_messages": 10}, timeout=5)
    if response.received_messages:
        ack_ids = [m.ack_id for m in response.received_messages]
        clients.subscriber().acknowledge(request={"subscription": subscription, "ack_ids": ack_ids})
    return [m.message for m in response.received_messages]


# ---- the local stack's status push target ------------------------------------------------------------------
class Broken:
    """``common.runtime.status.apply`` with a programming error for the ``started`` event of job ``noop-broken``."""

    def __init__(self, apply: Callable[[Event], Any]) -> None:
        self.apply, self.calls = apply, {"broken": 0, "other": 0}

    def __call__(self, event: Event) -> Any:
        broken = event.data.job_id == "noop-broken" and event.type is EventType.started
        self.calls["broken" if broken else "other"] += 1
        if broken:
            raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")
        return self.apply(event)


@pytest.fixture
def status_url(gcp: str, tasks_emulator: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Broken]]:
    """The status function as the local stack serves it, with a programming error, behind ``status-push``
    provisioned as the local stack does."""
    monkeypatch.setenv("TRIBUTARY_AUTH", "off")  # as the local stack runs it: the emulator sends no token
    reset_settings()
    broken = Broken(common.runtime.status.apply)
    monkeypatch.setattr(common.runtime.status, "apply", broken)
    for url in serve(create_app("status", str(PUSHED), "cloudevent")):
        provision(url)
        yield url, broken


def event(etype: EventType, job_id: str) -> Event:
    return Event.make(etype, EventData(job_id=job_id, source="noop"))


def test_a_failing_push_ends_in_the_dead_letters_after_the_deployed_number_of_deliveries(
    status_url: tuple[str, Broken],
) -> None:
    _, broken = status_url
    poison = event(EventType.started, "noop-broken")
    publish(poison)
    assert wait_for(lambda: broken.calls["broken"] >= MAX_DELIVERY_ATTEMPTS, 60), broken.calls

    def listed() -> list[dict[str, Any]]:
        result = CliRunner().invoke(cli, ["dlq", "list", "--json"])
        assert result.exit_code == 0, result.output
        listing = result.output[result.output.index("[") :]  # after the line naming the target
        return [d for d in json.loads(listing) if d["where"] == "pubsub"]

    assert wait_for(lambda: bool(listed()), 15)
    letters = listed()
    assert [d["preview"] for d in letters] == [poison.to_bytes()[:120].decode()]
    time.sleep(3)  # three of the emulator's redelivery intervals: a further delivery would have come by now
    assert broken.calls["broken"] == MAX_DELIVERY_ATTEMPTS, "acked once forwarded: the deliveries (and log) stop"

    publish(event(EventType.succeeded, "noop-broken"))  # the job's next event: its ordering key is not held
    assert wait_for(lambda: broken.calls["other"] >= 1, 15)
