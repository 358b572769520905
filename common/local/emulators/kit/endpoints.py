"""The addresses both emulator servers expose: gRPC, admin (time control), REST, and the engine's signer and clock."""

from __future__ import annotations

from typing import Any

from common.local.emulators.kit.admin import AdminServer
from common.local.emulators.kit.clock import Clock
from common.local.emulators.oidc import LocalSigner


class Endpoints:
    """Mixed into ``TasksEmulator`` and ``SchedulerEmulator``, which set these attributes in ``__init__``/``start``."""

    host: str
    port: int
    engine: Any
    _admin: AdminServer | None
    _rest: Any

    @property
    def address(self) -> str:
        """``host:port`` of the gRPC API, for ``common.gcp.clients`` (valid after ``start``)."""
        return f"{self.host}:{self.port}"

    @property
    def admin_address(self) -> str | None:
        return f"{self.host}:{self._admin.port}" if self._admin is not None else None

    @property
    def rest_url(self) -> str | None:
        """``http://host:port`` of the REST API (with ``rest_port``, after ``start``)."""
        return f"http://{self.host}:{self._rest.port}" if self._rest is not None else None

    @property
    def signer(self) -> LocalSigner:
        """The OIDC signer (``default_signer()`` on first use when none was given)."""
        return self.engine.signer

    @property
    def clock(self) -> Clock:
        return self.engine.clock
