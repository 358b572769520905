"""The local stack's child processes: Google's emulators' commands, readiness checks, and stopping process groups."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from common.core.errors import ConfigError


def sdk_root() -> Path:
    """The Google Cloud SDK root: ``CLOUDSDK_ROOT``, ``gcloud info``, or the Debian package's path.

    Raises:
        ConfigError: no SDK was found (the message says how to install it).
    """
    if env := os.environ.get("CLOUDSDK_ROOT"):
        return Path(env)
    for guess in ("/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk", "/opt/google-cloud-sdk"):
        if (Path(guess) / "platform").is_dir():
            return Path(guess)
    gcloud = shutil.which("gcloud")
    if gcloud:
        gcloud_env = {**os.environ, "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false", "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        out = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            env=gcloud_env,
            timeout=60,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    raise ConfigError(
        "the Google Cloud SDK (gcloud) was not found. Install it with the emulators: "
        "`apt-get install google-cloud-cli google-cloud-cli-pubsub-emulator google-cloud-cli-firestore-emulator` "
        "(Debian/Ubuntu, Google's apt repository), or set CLOUDSDK_ROOT to an SDK folder."
    )


def emulator_commands(host: str, ports: dict[str, int]) -> dict[str, list[str]]:
    """The direct launch commands of Google's emulators (faster than ``gcloud beta emulators``).

    Raises:
        ConfigError: an emulator or Java is missing; the message names the package to install.
    """
    root = sdk_root()
    pubsub = root / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
    firestore_jar = root / "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
    if not pubsub.exists():
        raise ConfigError(
            f"the Pub/Sub emulator is missing ({pubsub}). Install `google-cloud-cli-pubsub-emulator` "
            "(apt) or run `gcloud components install pubsub-emulator`."
        )
    if not firestore_jar.exists():
        raise ConfigError(
            f"the Firestore emulator is missing ({firestore_jar}). Install `google-cloud-cli-firestore-emulator` "
            "(apt) or run `gcloud components install cloud-firestore-emulator`."
        )
    java = shutil.which("java")
    if not java:
        raise ConfigError("Java 11+ is needed by the Google emulators: install e.g. `openjdk-17-jre-headless`.")
    return {
        "pubsub": [str(pubsub), f"--host={host}", f"--port={ports['pubsub']}"],
        "firestore": [
            java,
            "-cp",
            str(firestore_jar),
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
            "start",
            f"--host={host}",
            f"--port={ports['firestore']}",
        ],
    }


def wait_until(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll ``check`` (bounded) until true.

    Raises:
        ConfigError: ``proc`` exited, or ``timeout`` passed; the message carries the log's tail.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ConfigError(f"{what} exited with code {proc.returncode} while starting{_tail(log)}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise ConfigError(f"{what} did not become ready within {timeout:.0f} s{_tail(log)}")


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"; last lines of {log}:\n" + "\n".join(text)


def http_ready(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=1.0).status_code < 500


def grpc_ready(port: int, host: str = "127.0.0.1") -> Callable[[], bool]:
    """Ready once a gRPC server answers a call, with anything (an unknown method answers UNIMPLEMENTED).

    An open port is not enough: a listening socket accepts connections before the server serves, and a
    bench run once saw the first ``create_queue`` wait out its whole 20 s deadline after ``tcp_ready``.
    """

    def check() -> bool:
        import grpc

        with grpc.insecure_channel(f"{host}:{port}") as channel:
            try:
                channel.unary_unary("/tributary.devstack.Readiness/Ping")(b"", timeout=1.0)
            except grpc.RpcError as exc:
                return bool(exc.code() == grpc.StatusCode.UNIMPLEMENTED)
        return True

    return check


def tcp_ready(port: int, host: str = "127.0.0.1") -> Callable[[], bool]:
    def check() -> bool:
        with socket.create_connection((host, port), timeout=1.0):
            return True

    return check


def alive(pid: int) -> bool:
    """Whether the process group ``pid`` still runs (an exited child of ours is reaped first)."""
    with contextlib.suppress(ChildProcessError):  # reap our own exited child: a zombie leader keeps the group
        os.waitpid(pid, os.WNOHANG)
    try:
        os.killpg(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop_groups(pids: dict[str, int], timeout: float = 10.0) -> list[str]:
    """SIGTERM each process group, then SIGKILL what is left after ``timeout``; returns the names stopped."""
    stopped = []
    for name, pid in pids.items():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
            stopped.append(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids.values()):
        time.sleep(0.1)
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    return stopped
