"""An in-process fake of Secret Manager's gRPC API, for testing the real ``google-cloud-secret-manager`` client.

Google ships no Secret Manager emulator, so this fake serves ``google.cloud.secretmanager.v1.SecretManagerService``
over plaintext gRPC on 127.0.0.1 at a free port, with the client library's own proto messages. Point
the stock client at it with ``TRIBUTARY_SECRET_MANAGER_EMULATOR_HOST=<address>``
(:func:`common.gcp.clients.secret_manager`). It implements the four RPCs ``common/gcp/secrets.py`` needs:

- ``CreateSecret``: ALREADY_EXISTS for an existing secret, INVALID_ARGUMENT without a replication policy
  or with an id outside ``[A-Za-z0-9_-]{1,255}``;
- ``AddSecretVersion``: versions numbered 1, 2, … per secret; NOT_FOUND for an unknown secret;
  INVALID_ARGUMENT for a payload over 64 KiB or one whose ``data_crc32c`` does not match;
- ``AccessSecretVersion``: a version number or ``latest`` (the newest version); the answer names the
  resolved version and carries ``data_crc32c``; NOT_FOUND for an unknown secret or version;
- ``GetSecret``: the secret, or NOT_FOUND.

Secrets listed in :attr:`SecretManagerFake.denied` answer PERMISSION_DENIED to every call, as Secret
Manager does when IAM refuses the caller; :meth:`SecretManagerFake.fail_next` makes the next call(s)
answer a given status. Names keep the project id they were given (Secret Manager answers with the
project number). No IAM, labels, aliases, disabling, destruction, listing or deletion.
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
import grpc
from google.cloud.secretmanager_v1 import types as sm
from google.protobuf import timestamp_pb2

from common.local.emulators._grpc import RpcError, invalid, not_found, unary

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
MAX_PAYLOAD_BYTES = 64 * 1024
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_SECRET_NAME = re.compile(r"^projects/([^/]+)/secrets/([^/]+)$")
_VERSION_NAME = re.compile(r"^(projects/[^/]+/secrets/[^/]+)/versions/([^/]+)$")

log = logging.getLogger("tests.fakes.secretmanager")


@dataclass
class _Secret:
    secret: sm.Secret
    versions: list[bytes] = field(default_factory=list)


class SecretManagerFake:
    """The fake server: ``with SecretManagerFake() as fake: …``; :attr:`address` is ``127.0.0.1:PORT``.

    ``calls`` records the name of every RPC received, in order.
    """

    def __init__(self) -> None:
        self.secrets: dict[str, _Secret] = {}
        self.denied: set[str] = set()
        self.calls: list[str] = []
        self._faults: list[grpc.StatusCode] = []
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port = 0

    # lifecycle ---------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> SecretManagerFake:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="sm-fake"))
        table: list[tuple[str, Any, Any, Any]] = [
            ("CreateSecret", self._create_secret, sm.CreateSecretRequest, sm.Secret.serialize),
            ("AddSecretVersion", self._add_version, sm.AddSecretVersionRequest, sm.SecretVersion.serialize),
            (
                "AccessSecretVersion",
                self._access,
                sm.AccessSecretVersionRequest,
                sm.AccessSecretVersionResponse.serialize,
            ),
            ("GetSecret", self._get_secret, sm.GetSecretRequest, sm.Secret.serialize),
        ]
        handlers = {name: unary(name, self._recorded(name, fn), req, ser, log=log) for name, fn, req, ser in table}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = server.add_insecure_port("127.0.0.1:0")
        if not self.port:
            raise RuntimeError("cannot bind 127.0.0.1")
        server.start()
        self._server = server
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is not None:
            self._server.stop(grace=0.5).wait(timeout)
            self._server = None

    def __enter__(self) -> SecretManagerFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # test helpers ------------------------------------------------------------------------------

    def fail_next(self, code: grpc.StatusCode, times: int = 1) -> None:
        with self._lock:
            self._faults.extend([code] * times)

    def versions(self, project: str, secret_id: str) -> list[bytes]:
        """The payloads of every version of the secret, oldest first ([] when it does not exist)."""
        with self._lock:
            entry = self.secrets.get(f"projects/{project}/secrets/{secret_id}")
            return list(entry.versions) if entry else []

    # the RPCs ----------------------------------------------------------------------------------

    def _recorded(self, method: str, fn: Any) -> Any:
        def call(request: Any) -> Any:
            with self._lock:
                self.calls.append(method)
                fault = self._faults.pop(0) if self._faults else None
            if fault is not None:
                raise RpcError(fault, f"injected {fault.name}")
            return fn(request)

        return call

    def _check_access(self, secret_id: str) -> None:
        if secret_id in self.denied:
            raise RpcError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission 'secretmanager.versions.access' denied for resource '{secret_id}' (or it may not exist).",
            )

    def _lookup(self, name: str) -> _Secret:
        match = _SECRET_NAME.match(name)
        if match is None:
            raise invalid(f"bad secret name {name!r}")
        self._check_access(match.group(2))
        entry = self.secrets.get(name)
        if entry is None:
            raise not_found(f"Secret [{name}] not found or has no versions.")
        return entry

    def _create_secret(self, request: sm.CreateSecretRequest) -> sm.Secret:
        if not _SECRET_ID.match(request.secret_id):
            raise invalid(f"secret_id {request.secret_id!r} must match [A-Za-z0-9_-]{{1,255}}")
        self._check_access(request.secret_id)
        if "replication" not in request.secret:
            raise invalid("Secret.replication is required.")
        name = f"{request.parent}/secrets/{request.secret_id}"
        with self._lock:
            if name in self.secrets:
                raise RpcError(grpc.StatusCode.ALREADY_EXISTS, f"Secret [{name}] already exists.")
            secret = sm.Secret(request.secret, name=name, create_time=_now())
            self.secrets[name] = _Secret(secret)
        return secret

    def _add_version(self, request: sm.AddSecretVersionRequest) -> sm.SecretVersion:
        data = request.payload.data
        if len(data) > MAX_PAYLOAD_BYTES:
            raise invalid(f"Secret payload must be at most {MAX_PAYLOAD_BYTES} bytes.")
        if "data_crc32c" in request.payload and request.payload.data_crc32c != google_crc32c.value(data):
            raise invalid("Checksum mismatch: data_crc32c does not match the payload.")
        with self._lock:
            entry = self._lookup(request.parent)
            entry.versions.append(bytes(data))
            number = len(entry.versions)
        return sm.SecretVersion(
            name=f"{request.parent}/versions/{number}",
            create_time=_now(),
            state=sm.SecretVersion.State.ENABLED,
            client_specified_payload_checksum="data_crc32c" in request.payload,
        )

    def _access(self, request: sm.AccessSecretVersionRequest) -> sm.AccessSecretVersionResponse:
        match = _VERSION_NAME.match(request.name)
        if match is None:
            raise invalid(f"bad secret version name {request.name!r}")
        secret_name, version = match.groups()
        with self._lock:
            entry = self._lookup(secret_name)
            count = len(entry.versions)
            number = count if version == "latest" else int(version) if version.isdigit() else 0
            if not 1 <= number <= count:
                raise not_found(f"Secret Version [{request.name}] not found.")
            data = entry.versions[number - 1]
        return sm.AccessSecretVersionResponse(
            name=f"{secret_name}/versions/{number}",
            payload=sm.SecretPayload(data=data, data_crc32c=google_crc32c.value(data)),
        )

    def _get_secret(self, request: sm.GetSecretRequest) -> sm.Secret:
        with self._lock:
            return self._lookup(request.name).secret


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp
