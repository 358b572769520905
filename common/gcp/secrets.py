"""Secrets: the environment (``TRIBUTARY_SECRET_<NAME>``), a local file, then Secret Manager (cached).

Locally (the dev stack) secrets come from the environment or from the local secrets file
(``TRIBUTARY_SECRETS_FILE``, default ``.tributary/secrets.json``). The stack gives its functions that file's
absolute path and records it with its endpoints, so ``tributary secrets set`` on the local target writes the
very file the functions read; they read it at every task (a file of a few bytes), so a new secret counts
without a restart. In the cloud secrets come from Secret Manager. The ``TRIBUTARY_SECRET_<NAME>`` variables
are secret values, one per declared secret (Cloud Run resolves them at start-up), not settings, so they are
read here and never kept in :class:`common.settings.Settings`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path

from common.core.errors import ConfigError, TransientError
from common.gcp import names
from common.gcp.clients import bounded_call, secret_manager
from common.settings import Settings, settings

_cache: dict[str, str] = {}
_lock = threading.Lock()


def local_file() -> Path:
    """The local secrets file (``TRIBUTARY_SECRETS_FILE``), as an absolute path."""
    return Path(settings().secrets_file).resolve()


def _read_local(file: Path) -> dict[str, object]:
    """The local secrets file's entries ({} when there is none).

    Raises:
        ConfigError: the file is not a JSON object (the message names it).
    """
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"the local secrets file {file} is unreadable ({exc}); fix or delete it") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"the local secrets file {file} is not a JSON object; fix or delete it")
    return data


def _local(name: str) -> str | None:
    """The secret from the local file, read afresh at each call (a secret set meanwhile counts at once)."""
    value = _read_local(local_file()).get(name)
    return str(value) if value is not None else None


def is_local(s: Settings | None = None) -> bool:
    """Whether secrets are local here (the stack, the emulators, tests): Secret Manager is never asked."""
    s = s or settings()
    return bool(s.firestore_emulator_host or s.no_secret_manager)


def set_command(name: str, s: Settings | None = None) -> str:
    """The command that stores the secret where these settings' functions read it."""
    s = s or settings()
    where = "" if is_local(s) else f"--project {s.project} "
    return f"tributary {where}secrets set {name} VALUE"


def env_name(name: str) -> str:
    return "TRIBUTARY_SECRET_" + "".join(c if c.isalnum() else "_" for c in name).upper()


def get_secret(name: str) -> str | None:
    """The secret's value, or None when it is set nowhere.

    Raises:
        TransientError: Secret Manager could not be reached.
        ConfigError: Secret Manager refused access (the message names the secret).
    """
    if value := os.environ.get(env_name(name)) or _local(name):
        return value
    with _lock:
        if name in _cache:
            return _cache[name]
    if is_local():
        return None  # local stack: the environment and the local file are the only stores
    value = _from_secret_manager(name)
    if value is not None:
        with _lock:
            _cache[name] = value
    return value


def _from_secret_manager(name: str) -> str | None:
    from google.api_core import exceptions as gexc

    path = names.secret_version_path(name)
    try:
        response = secret_manager().access_secret_version(name=path, **bounded_call())
    except gexc.NotFound:
        return None
    except gexc.PermissionDenied as exc:
        raise ConfigError(f"no permission to read secret {name}: {exc.message}") from exc
    except (gexc.GoogleAPICallError, gexc.RetryError) as exc:
        # RetryError: the client's own retry of UNAVAILABLE gave up (after 60 s); it is no GoogleAPICallError.
        raise TransientError(f"Secret Manager failed reading {name}: {exc}") from exc
    return response.payload.data.decode()


def set_secret(name: str, value: str, *, local: bool = False) -> str:
    """Store ``value`` as the secret's newest version (creating the secret if needed); returns where.

    Raises:
        ConfigError: Secret Manager refused (the message says why).
    """
    if not value:
        raise ConfigError(f"refusing to store an empty value for {name}")
    if local:
        file = local_file()
        file.parent.mkdir(parents=True, exist_ok=True)
        data = {**_read_local(file), name: value}
        # Written aside and renamed, so that a function reading it meanwhile sees the old file or the new one.
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".secrets-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                os.fchmod(f.fileno(), 0o600)
                json.dump(data, f, indent=2)
            os.replace(tmp, file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return str(file)
    from google.api_core import exceptions as gexc

    client = secret_manager()
    parent, secret = names.project_path(), names.secret_path(name)
    try:
        with contextlib.suppress(gexc.AlreadyExists):
            client.create_secret(
                request={"parent": parent, "secret_id": name, "secret": {"replication": {"automatic": {}}}}
            )
        client.add_secret_version(request={"parent": secret, "payload": {"data": value.encode()}})
    except gexc.GoogleAPICallError as exc:
        raise ConfigError(f"Secret Manager refused to store {name}: {exc}") from exc
    with _lock:
        _cache[name] = value
    return secret
