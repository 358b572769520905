"""Secrets through the real google-cloud-secret-manager client, against tests/fakes/secretmanager.py.

Google ships no Secret Manager emulator, so the service is faked here: the client is the stock one,
unchanged, talking plaintext gRPC to the fake (``TRIBUTARY_SECRET_MANAGER_EMULATOR_HOST``, see
``common.gcp.clients.secret_manager``); errors travel as real gRPC statuses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from common.core.errors import ConfigError, TransientError
from common.gcp import secrets
from common.gcp.clients import reset_clients, secret_manager
from common.gcp.secrets import get_secret, set_secret
from common.settings import reset_settings
from tests.fakes.secretmanager import SecretManagerFake

PROJECT = "t-secrets"
NAME = "FRED_API_KEY"


@pytest.fixture
def sm(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretManagerFake]:
    """The fake, with Secret Manager enabled (conftest turns it off) and an empty in-process cache."""
    fake = SecretManagerFake().start()
    monkeypatch.setenv("TRIBUTARY_SECRET_MANAGER_EMULATOR_HOST", fake.address)
    monkeypatch.setenv("TRIBUTARY_PROJECT", PROJECT)
    monkeypatch.delenv("TRIBUTARY_NO_SECRET_MANAGER")
    monkeypatch.setattr(secrets, "_cache", {})
    reset_settings()
    reset_clients()
    yield fake
    reset_clients()
    fake.stop()


def forget_cache() -> None:
    """As in a fresh process: get_secret caches what Secret Manager answered, set_secret what it stored."""
    secrets._cache.clear()


def test_set_secret_creates_the_secret_then_adds_a_version(sm: SecretManagerFake) -> None:
    where = set_secret(NAME, "key-1")

    assert where == f"projects/{PROJECT}/secrets/{NAME}"
    assert sm.calls == ["CreateSecret", "AddSecretVersion"]
    assert sm.versions(PROJECT, NAME) == [b"key-1"]
    secret = secret_manager().get_secret(name=where)  # read back through the real client
    assert secret.name == where
    assert "automatic" in secret.replication


def test_a_second_set_adds_a_version_and_the_latest_wins(
    sm: SecretManagerFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_secret(NAME, "key-1")
    set_secret(NAME, "key-2")

    # The second CreateSecret answers ALREADY_EXISTS, which set_secret passes over.
    assert sm.calls == ["CreateSecret", "AddSecretVersion", "CreateSecret", "AddSecretVersion"]
    assert sm.versions(PROJECT, NAME) == [b"key-1", b"key-2"]
    assert get_secret(NAME) == "key-2"  # from set_secret's write-through cache: no RPC
    assert "AccessSecretVersion" not in sm.calls
    forget_cache()
    assert get_secret(NAME) == "key-2"  # from Secret Manager's "latest"
    assert sm.calls[-1] == "AccessSecretVersion"
    first = secret_manager().access_secret_version(name=f"projects/{PROJECT}/secrets/{NAME}/versions/1")
    assert first.payload.data == b"key-1"


def test_get_secret_reads_the_environment_then_the_local_file_then_secret_manager(
    sm: SecretManagerFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_secret(NAME, "from-secret-manager")
    forget_cache()
    secrets.local_file().write_text(json.dumps({NAME: "from-file"}))
    monkeypatch.setenv("TRIBUTARY_SECRET_FRED_API_KEY", "from-env")
    calls = len(sm.calls)

    assert get_secret(NAME) == "from-env"
    monkeypatch.delenv("TRIBUTARY_SECRET_FRED_API_KEY")
    assert get_secret(NAME) == "from-file"
    assert len(sm.calls) == calls  # neither asked Secret Manager

    secrets.local_file().write_text(json.dumps({"OTHER": "x"}))
    assert get_secret(NAME) == "from-secret-manager"
    assert sm.calls[calls:] == ["AccessSecretVersion"]


def test_secret_manager_answers_are_cached(sm: SecretManagerFake) -> None:
    set_secret("COMTRADE_KEY", "old")
    forget_cache()
    assert get_secret("COMTRADE_KEY") == "old"

    # A version added elsewhere (another process, the console) is not seen until the process restarts.
    secret_manager().add_secret_version(
        request={"parent": f"projects/{PROJECT}/secrets/COMTRADE_KEY", "payload": {"data": b"new"}}
    )

    assert get_secret("COMTRADE_KEY") == "old"
    assert sm.calls.count("AccessSecretVersion") == 1


def test_a_missing_secret_is_none_and_asked_again_next_time(sm: SecretManagerFake) -> None:
    assert get_secret("NOT_SET_ANYWHERE") is None
    assert get_secret("NOT_SET_ANYWHERE") is None
    assert sm.calls == ["AccessSecretVersion", "AccessSecretVersion"]  # a miss is not cached

    secret_manager().create_secret(
        request={
            "parent": f"projects/{PROJECT}",
            "secret_id": "NO_VERSIONS",
            "secret": {"replication": {"automatic": {}}},
        }
    )
    assert get_secret("NO_VERSIONS") is None  # a secret without versions reads as unset too


def test_permission_denied_is_a_config_error_naming_the_secret(sm: SecretManagerFake) -> None:
    set_secret(NAME, "key-1")
    forget_cache()
    sm.denied.add(NAME)

    with pytest.raises(ConfigError, match=f"no permission to read secret {NAME}: Permission 'secretmanager"):
        get_secret(NAME)


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED],
)
def test_transient_failures_are_retried_within_the_deadline(sm: SecretManagerFake, code: grpc.StatusCode) -> None:
    """The read passes common.gcp.clients.bounded_call(): transient codes are retried (first back-off 0.1 s)."""
    set_secret(NAME, "key-1")
    forget_cache()
    sm.fail_next(code)
    started = time.monotonic()

    assert get_secret(NAME) == "key-1"

    assert sm.calls[-2:] == ["AccessSecretVersion", "AccessSecretVersion"]
    assert time.monotonic() - started < 5.0


def test_secret_manager_unavailable_past_the_deadline_is_transient(
    sm: SecretManagerFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the retry gives up it raises RetryError, which is no GoogleAPICallError (docs/google-quirks.md).
    Left to the client's defaults that took 60 s; TRIBUTARY_CALL_DEADLINE bounds it."""
    monkeypatch.setenv("TRIBUTARY_CALL_DEADLINE", "0.5")
    reset_settings()
    sm.fail_next(grpc.StatusCode.UNAVAILABLE, times=1000)
    started = time.monotonic()

    with pytest.raises(TransientError, match=r"Timeout of 0\.5s exceeded, last exception: 503 injected UNAVAILABLE"):
        get_secret(NAME)
    assert sm.calls.count("AccessSecretVersion") >= 2
    assert time.monotonic() - started < 5.0


def test_set_secret_refused_is_a_config_error_and_stores_nothing(sm: SecretManagerFake) -> None:
    sm.denied.add(NAME)

    with pytest.raises(ConfigError, match=f"Secret Manager refused to store {NAME}"):
        set_secret(NAME, "key-1")

    assert sm.secrets == {}
    assert secrets._cache == {}


def test_a_refused_set_leaves_nothing_in_the_cache(sm: SecretManagerFake) -> None:
    sm.fail_next(grpc.StatusCode.NOT_FOUND)  # as Secret Manager answers for a project that does not exist

    with pytest.raises(ConfigError, match="refused to store"):
        set_secret(NAME, "key-1")

    assert get_secret(NAME) is None
    assert sm.calls == ["CreateSecret", "AccessSecretVersion"]


def test_an_empty_value_is_refused_before_any_call(sm: SecretManagerFake) -> None:
    with pytest.raises(ConfigError, match="empty value"):
        set_secret(NAME, "")
    assert sm.calls == []


def test_set_secret_local_never_calls_secret_manager(sm: SecretManagerFake, tmp_path: Path) -> None:
    assert set_secret(NAME, "local-key", local=True) == str(tmp_path / "secrets.json")

    assert get_secret(NAME) == "local-key"
    assert sm.calls == []


@pytest.mark.parametrize(
    "variable", ["FIRESTORE_EMULATOR_HOST", "TRIBUTARY_FIRESTORE_EMULATOR_HOST", "TRIBUTARY_NO_SECRET_MANAGER"]
)
def test_the_local_stack_never_asks_secret_manager(
    sm: SecretManagerFake, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    set_secret(NAME, "in-the-cloud")
    forget_cache()
    monkeypatch.setenv(variable, "127.0.0.1:1" if "HOST" in variable else "1")
    reset_settings()

    assert get_secret(NAME) is None
    assert "AccessSecretVersion" not in sm.calls
