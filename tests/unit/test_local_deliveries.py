"""The local push target's delivery bound (``common.local.deliveries``), without an emulator."""

from __future__ import annotations

from typing import Any

import pytest

from common.local import deliveries
from common.local.deliveries import Deliveries, bounded


class CloudEvent:
    def __init__(self, message_id: str) -> None:
        self.data = {"message": {"data": "", "messageId": message_id}, "subscription": "s"}


@pytest.fixture
def forwarded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []

    def dead_letter(message: dict[str, Any], subscription: str, attempts: int) -> str:
        out.append((message["messageId"], subscription, attempts))
        return "d-1"

    monkeypatch.setattr(deliveries, "dead_letter", dead_letter)
    return out


def failing(_: Any) -> None:
    raise TypeError("a programming error")


def test_the_last_allowed_delivery_is_forwarded_and_acked(forwarded: list[tuple[str, str, int]]) -> None:
    push = bounded(failing, "status-push", max_attempts=3)
    for _ in range(2):
        with pytest.raises(TypeError):
            push(CloudEvent("m1"))
    push(CloudEvent("m1"))  # the third failure: forwarded, and the push answered 2xx
    assert forwarded == [("m1", "status-push", 3)]
    with pytest.raises(TypeError):
        push(CloudEvent("m1")), "forgotten once forwarded: a new publish of the id starts again"


def test_a_success_forgets_earlier_failures(forwarded: list[tuple[str, str, int]]) -> None:
    calls = {"n": 0}

    def flaky(_: Any) -> None:
        calls["n"] += 1
        if calls["n"] % 2:
            raise ConnectionError("transient")

    push = bounded(flaky, "load-push", max_attempts=2)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            push(CloudEvent("m2"))
        push(CloudEvent("m2"))
    assert forwarded == []


def test_a_push_without_a_message_id_is_never_forwarded(forwarded: list[tuple[str, str, int]]) -> None:
    push = bounded(failing, "status-push", max_attempts=1)
    with pytest.raises(TypeError):
        push(CloudEvent(""))
    assert forwarded == []


def test_a_failed_forward_fails_the_push_with_the_original_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*_: Any) -> str:
        raise RuntimeError("pubsub down")

    monkeypatch.setattr(deliveries, "dead_letter", unavailable)
    with pytest.raises(TypeError, match="a programming error"):
        bounded(failing, "status-push", max_attempts=1)(CloudEvent("m3"))


def test_the_counts_are_bounded() -> None:
    counts = Deliveries(remember=2)
    assert [counts.failed("a"), counts.failed("b"), counts.failed("a"), counts.failed("c")] == [1, 1, 2, 1]
    assert counts.failed("b") == 1, "the oldest id was forgotten"
