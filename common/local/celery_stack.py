"""The local stack's Celery executor (``TRIBUTARY_DISPATCH=celery``): Redis on a loopback port, and a worker."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from common.local.redis import celery_worker_command, redis_command, redis_ready
from common.runtime import executors
from common.settings import Settings

#: How long the worker may take to say it is ready (it imports the runtime and connects to Redis).
WORKER_TIMEOUT = 60.0


class _Stack(Protocol):
    ports: dict[str, int]
    state_dir: Path

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> object: ...

    def _wait(self, name: str, check: Callable[[], bool], what: str) -> None: ...

    def _log(self, name: str) -> Path: ...


def celery_dispatch(env: Mapping[str, str]) -> bool:
    """Whether the stack runs the Celery executor: a dispatcher in use for ``env``'s settings is Celery (the
    rollback flag ``TRIBUTARY_DISPATCH=celery``, the celery profile, or a source routed to it).

    Raises:
        ConfigError: a setting in ``env`` is invalid.
    """
    return "celery" in executors.dispatchers_in_use(Settings.from_env(env))


def start_redis(stack: _Stack, host: str) -> dict[str, str]:
    """Start Redis (no snapshot, in ``<state>/redis``), wait until it answers; returns the functions' broker setting.

    Raises:
        ConfigError: redis-server is not installed (the message says how) or did not start.
    """
    port = stack.ports["redis"]
    workdir = stack.state_dir / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    stack._spawn("redis", redis_command(host, port, workdir))
    stack._wait("redis", redis_ready(port, host), "redis-server")
    return {"TRIBUTARY_DISPATCH": "celery", "TRIBUTARY_CELERY_BROKER_URL": f"redis://{host}:{port}/0"}


def start_worker(stack: _Stack, env: dict[str, str], concurrency: int = 2) -> None:
    """Start the Celery worker (every source's queue) and wait until it says it is ready.

    Raises:
        ConfigError: the worker exited or did not become ready.
    """
    ready = worker_ready(stack._log("worker"))
    stack._spawn("worker", celery_worker_command(concurrency), env)
    stack._wait("worker", ready, "the Celery worker")


def worker_ready(log: Path) -> Callable[[], bool]:
    """True once the worker's log, past what it holds now, says the worker is ready (Celery logs `` ready.``)."""
    start = log.stat().st_size if log.exists() else 0

    def check() -> bool:
        with log.open("rb") as f:
            f.seek(start)
            return b" ready." in f.read()

    return check
