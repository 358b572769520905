"""Redis for the Celery executor, started like the emulators: loopback, a temp folder, nothing saved, killed at the end.

Used by the local stack (when ``TRIBUTARY_DISPATCH=celery``), by the tests and by the benchmarks.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from common.core.errors import ConfigError
from common.local.ports import free_port
from common.local.processes import stop_groups, wait_until

INSTALL_HINT = "install it with `sudo apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS)"
STARTUP_TIMEOUT = 20.0


def redis_server_path() -> str:
    """The ``redis-server`` binary on ``PATH``.

    Raises:
        ConfigError: it is not installed (the message says how to install it).
    """
    found = shutil.which("redis-server")
    if not found:
        raise ConfigError(f"redis-server was not found (the Celery executor's broker): {INSTALL_HINT}")
    return found


def redis_command(host: str, port: int, workdir: Path) -> list[str]:
    """``redis-server`` on ``host:port`` only, in ``workdir``, with no snapshot and no append-only file.

    Raises:
        ConfigError: redis-server is not installed.
    """
    return [
        redis_server_path(),
        "--port", str(port),
        "--bind", host,
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--daemonize", "no",
        "--loglevel", "warning",
    ]  # fmt: skip


def redis_ready(port: int, host: str = "127.0.0.1") -> Callable[[], bool]:
    """Ready once the server answers ``PING`` (an open port is not enough while it loads)."""

    def check() -> bool:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")

    return check


class RedisServer:
    """One ``redis-server`` of our own, on a free loopback port and in a temp folder, until :meth:`stop`."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, workdir: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="trib-redis-")
            workdir = Path(self._tmp.name)
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker URL for Celery (database 0)."""
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait (bounded) until it answers.

        Raises:
            ConfigError: redis-server is not installed, or did not become ready (with its log's tail).
        """
        argv = redis_command(self.host, self.port, self.workdir)
        log_path = self.workdir / "redis.log"
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )
        try:
            wait_until(redis_ready(self.port, self.host), "redis-server", STARTUP_TIMEOUT, self.proc, log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill the server (its process group) and remove its temp folder."""
        if self.proc is not None:
            stop_groups({"redis": self.proc.pid}, timeout=5.0)
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=5)
            self.proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def celery_worker_command(concurrency: int = 2, queues: list[str] | None = None) -> list[str]:
    """The worker the local stack, the tests and the benchmarks run: the documented ``celery -A`` command
    (``tributary worker`` runs the same), prefork, consuming ``queues`` (default: every source's)."""
    argv = [sys.executable, "-m", "celery", "-A", "common.runtime.workers.celery_app", "worker", "--pool=prefork"]
    argv += [f"--concurrency={concurrency}", "--loglevel=INFO", "--without-gossip", "--without-mingle"]
    argv += [f"--hostname=tributary-{uuid.uuid4().hex[:8]}@%h"]  # unique: queue controls address workers by name
    return argv + ([f"--queues={','.join(queues)}"] if queues else [])
