"""Secrets: the environment (``TRIBUTARY_SECRET_<NAME>``), a local file, then Secret Manager; cached.

Locally (the dev stack) secrets come from the environment or from ``.tributary/secrets.json``, which
``tributary secrets set --local`` writes; in the cloud from Secret Manager. The ``TRIBUTARY_SECRET_<NAME>``
variables are secret values, one per declared secret (Cloud Run resolves them at start-up), not settings, so
they are read here and never kept in :class:`common.settings.Settings`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path

from common.core.errors import ConfigError, TransientError
from common.gcp import names
from common.gcp.clients import bounded_call, secret_manager
from common.settings import settings

_cache: dict[str, str] = {}
_lock = threading.Lock()


def local_file() -> Path:
    return Path(settings().secrets_file).resolve()


def _local(name: str) -> str | None:
    file = local_file()
    if not file.is_file():
        return None
    value = json.loads(file.read_text()).get(name)
    return str(value) if value is not None else None


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
    if settings().firestore_emulator_host or settings().no_secret_manager:
        return None  # local stack: the environment is the only store
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
        data = json.loads(file.read_text()) if file.is_file() else {}
        data[name] = value
        file.write_text(json.dumps(data, indent=2))
        file.chmod(0o600)
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
