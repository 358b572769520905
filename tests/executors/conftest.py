"""The executors on real servers: Redis (started here, like the emulators), a Celery worker, the local stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.core.errors import ConfigError
from common.local.redis import RedisServer, redis_server_path

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder carries the ``executors`` marker."""
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.executors)


def need_redis() -> None:
    """Skip the test, saying how to install it, when redis-server is missing."""
    try:
        redis_server_path()
    except ConfigError as exc:
        pytest.skip(exc.message)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own: a free loopback port, a temp folder, nothing saved, killed at the end."""
    need_redis()
    with RedisServer() as server:
        yield server
