"""Shared fixtures: isolated environment, the real Pub/Sub and Firestore emulators, the Tasks emulator.

The Google emulators start once per session; each test gets its own project id, so Firestore
documents, topics and subscriptions never leak between tests and no reset is needed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.gcp.clients import reset_clients
from common.settings import reset_settings

REPO = Path(__file__).resolve().parents[1]
#: The real captured upstream files, beside the repository (never copied into it).
FIXTURES = REPO.parent / "shared" / "fixtures"


def fixture_path(*parts: str) -> Path:
    """A file under ../shared/fixtures, or skip the test with the reason."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared/fixtures not present ({path}): real-data conformance needs it beside the repo")
    return path


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test starts from a clean Tributary/Google environment and fresh cached clients."""
    for key in list(os.environ):
        if key.startswith(
            (
                "TRIBUTARY_",
                "PUBSUB_EMULATOR",
                "FIRESTORE_EMULATOR",
                "CLOUD_TASKS",
                "CLOUD_SCHEDULER",
                "STORAGE_EMULATOR",
            )
        ):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TRIBUTARY_OUTPUT_URI", (tmp_path / "data").as_uri())
    monkeypatch.setenv("TRIBUTARY_NO_SECRET_MANAGER", "1")
    monkeypatch.setenv("TRIBUTARY_SECRETS_FILE", str(tmp_path / "secrets.json"))
    reset_settings()
    reset_clients()
    yield
    reset_settings()
    reset_clients()


@pytest.fixture(scope="session")
def google_emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Google's real Pub/Sub and Firestore emulators, started once for the session."""
    from common.core.errors import ConfigError
    from common.local.stack import Stack, StackConfig

    stack = Stack(StackConfig(state_dir=tmp_path_factory.mktemp("emulators"), auto_ports=True, scheduler=False))
    try:
        hosts = stack.start_google_emulators()
    except ConfigError as exc:
        stack.down()
        pytest.fail(f"the Google emulators are needed for this test: {exc.message}")
    yield hosts
    stack.down()


@pytest.fixture
def gcp(google_emulators: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Point settings and clients at the emulators under a project of this test's own; returns it."""
    project = f"t-{uuid.uuid4().hex[:12]}"
    for key, value in google_emulators.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TRIBUTARY_PROJECT", project)
    reset_settings()
    reset_clients()
    return project


@pytest.fixture
def tasks_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The project's Cloud Tasks emulator, in process, with the clients pointed at it."""
    from common.local.emulators.tasks import TasksEmulator

    emulator = TasksEmulator(port=0)
    emulator.start()
    monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", emulator.address)
    reset_settings()
    reset_clients()
    yield emulator
    emulator.stop()


@pytest.fixture
def topic(gcp: str) -> tuple[str, str]:
    """The ``ingest-events`` topic with a pull subscription, to read what functions publish."""
    from common.gcp import clients

    name = f"projects/{gcp}/topics/ingest-events"
    sub = f"projects/{gcp}/subscriptions/test-pull"
    clients.publisher().create_topic(name=name)
    clients.subscriber().create_subscription(request={"name": sub, "topic": name})
    return name, sub


def pull_events(subscription: str, *, expect: int, timeout: float = 10.0) -> list[object]:
    """Pull (and ack) job events until ``expect`` arrived or ``timeout`` passed."""
    import time

    from common.core.events import Event
    from common.gcp import clients

    events: list[object] = []
    deadline = time.monotonic() + timeout
    sub = clients.subscriber()
    while len(events) < expect and time.monotonic() < deadline:
        response = sub.pull(request={"subscription": subscription, "max_messages": 50}, timeout=5)
        if response.received_messages:
            sub.acknowledge(
                request={"subscription": subscription, "ack_ids": [m.ack_id for m in response.received_messages]}
            )
        events.extend(Event.from_bytes(m.message.data) for m in response.received_messages)
    return events
