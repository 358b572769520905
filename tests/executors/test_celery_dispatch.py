"""The Celery dispatcher on a real Redis: named-task dedup with SET NX, one queue per source, pending ids."""

from __future__ import annotations

import json

import pytest

from common.celeryq import CeleryDispatcher
from common.core.errors import TransientError
from common.core.tasks import Part, QueueConfig, TaskPayload
from common.local.ports import free_port
from common.local.redis import RedisServer

QUEUE = QueueConfig(max_attempts=4, dispatch_deadline=120)


def payload(job: str, part: str | None = None) -> TaskPayload:
    return TaskPayload(job_id=job, source="fred", params={"a": 1}, part=Part(key=part) if part else None)


def test_a_second_enqueue_of_the_same_task_id_is_refused(redis_server: RedisServer) -> None:
    d = CeleryDispatcher(redis_server.url, dedup_ttl=60)
    assert d.enqueue(payload("fred-1"), QUEUE) is True
    assert d.enqueue(payload("fred-1"), QUEUE) is False
    assert d.enqueue(payload("fred-1", "DFF"), QUEUE) is True, "a part's task is its own"
    assert d.pending("fred") == ["fred-1", "fred-1--DFF"]
    assert 0 < d.redis.ttl("tributary:task:fred-1") <= 60, "the claim expires, like a Cloud Tasks name"
    raw = d.redis.lrange("ingest-fred", 0, -1)
    assert len(raw) == 2, "one message per task, on the source's own queue"
    message = json.loads(raw[-1])
    assert message["headers"]["task"] == "tributary.ingest" and message["headers"]["id"] == "fred-1"


def test_enqueue_many_claims_every_id_at_once_and_counts_duplicates(redis_server: RedisServer) -> None:
    d = CeleryDispatcher(redis_server.url)
    assert d.enqueue_many([payload("fred-1"), payload("fred-2")], QUEUE) == (2, 0)
    assert d.enqueue_many([payload("fred-2"), payload("fred-3")], QUEUE) == (1, 1)
    assert d.enqueue_many([], QUEUE) == (0, 0)
    assert d.redis.llen("ingest-fred") == 3


def test_deliveries_are_counted_and_a_finished_task_is_no_longer_pending(redis_server: RedisServer) -> None:
    d = CeleryDispatcher(redis_server.url)
    d.enqueue(payload("fred-9"), QUEUE)
    assert [d.delivered("fred-9") for _ in range(3)] == [1, 2, 3]
    d.finished("fred-9", "fred")
    assert d.pending("fred") == [] and d.delivered("fred-9") == 1
    assert d.enqueue(payload("fred-9"), QUEUE) is False, "finished, but its id stays claimed until the TTL"


def test_an_unreachable_broker_is_a_transient_error_that_names_it() -> None:
    d = CeleryDispatcher(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(TransientError, match=r"Celery broker at redis://127\.0\.0\.1"):
        d.enqueue(payload("fred-1"), QUEUE)


def test_the_runtime_enqueues_to_celery_when_the_flag_is_set(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.runtime import executors
    from common.settings import reset_settings
    from common.sources import get_source

    monkeypatch.setenv("TRIBUTARY_DISPATCH", "celery")
    monkeypatch.setenv("TRIBUTARY_CELERY_BROKER_URL", redis_server.url)
    reset_settings()
    fred = get_source("fred")
    dispatcher = executors.dispatcher("fred")
    assert type(dispatcher).__name__ == "CeleryDispatcher"
    assert dispatcher.enqueue(payload("fred-a"), fred.queue) is True
    assert dispatcher.enqueue_many([payload("fred-a"), payload("fred-b")], fred.queue) == (1, 1)
    pending = dispatcher.pending("fred")
    assert "fred-a" in pending and "fred-b" in pending and "fred-z" not in pending


def test_a_first_delivery_is_not_counted_and_later_ones_are_the_next_attempts(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker saves a Redis round trip per task: only a retry or a redelivery (a lost worker) is counted."""
    from types import SimpleNamespace

    from common.runtime.ingest import TaskOutcome
    from common.runtime.workers import celery_app
    from common.settings import reset_settings

    monkeypatch.setenv("TRIBUTARY_CELERY_BROKER_URL", redis_server.url)
    reset_settings()
    attempts: list[int] = []
    outcomes = iter([TaskOutcome(retry=True), TaskOutcome(retry=True), TaskOutcome()])
    monkeypatch.setattr(celery_app, "run_task", lambda _, delivery: attempts.append(delivery.attempt) or next(outcomes))
    d = celery_app.dispatcher()
    counted = []
    monkeypatch.setattr(d, "redelivered", lambda tid: counted.append(tid) or CeleryDispatcher.redelivered(d, tid))
    assert d.enqueue(payload("fred-7"), QUEUE)
    body = payload("fred-7").model_dump(mode="json")

    def task(retries: int, redelivered: bool) -> SimpleNamespace:
        info = {"redelivered": redelivered}
        request = SimpleNamespace(id="fred-7", retries=retries, delivery_info=info)
        return SimpleNamespace(request=request, retry=lambda **_: RuntimeError("retry"))

    with pytest.raises(RuntimeError):
        celery_app.ingest(task(0, False), body)  # type: ignore[arg-type]
    assert attempts == [1] and counted == [], "a first delivery costs no round trip"
    with pytest.raises(RuntimeError):
        celery_app.ingest(task(0, True), body)  # type: ignore[arg-type]  # given back after a lost worker
    celery_app.ingest(task(1, False), body)  # type: ignore[arg-type]  # the retry
    assert attempts == [1, 2, 3] and counted == ["fred-7", "fred-7"]
    assert d.pending("fred") == [] and d.redis.exists("tributary:attempts:fred-7") == 0
    reset_settings()


def test_a_task_is_claimed_and_pending_in_one_step_and_sent_without_a_result_to_wait_for(
    redis_server: RedisServer,
) -> None:
    d = CeleryDispatcher(redis_server.url)
    assert d.enqueue(payload("fred-5"), QUEUE) is True
    assert d.pending("fred") == ["fred-5"]
    d.finished("fred-5", "fred")
    assert d.enqueue(payload("fred-5"), QUEUE) is False
    assert d.enqueue_many([payload("fred-5")], QUEUE) == (0, 1)
    assert d.pending("fred") == [], "a refused duplicate is not pending again"
    (message,) = [json.loads(m) for m in d.redis.lrange("ingest-fred", 0, -1)]
    assert message["headers"]["ignore_result"] is True
    assert not d.app.backend.result_consumer.subscribed_to, "no result channel subscribed per task"
