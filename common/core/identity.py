"""Who made a request, and why one is refused: the identity and the errors every verifier raises."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Answer = tuple[dict[str, Any], int, dict[str, str]]


class Unauthorized(Exception):
    """A request that may not run: ``status`` 401 (no or bad credentials) or 403 (identity not allowed)."""

    def __init__(self, code: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def answer(self) -> Answer:
        headers = {"WWW-Authenticate": 'Bearer realm="tributary"'} if self.status == 401 else {}
        return {"error": {"code": self.code, "message": self.message}}, self.status, headers


class AuthUnavailable(Unauthorized):
    """The keys to verify with could not be fetched: 503, so Cloud Tasks and Pub/Sub retry later."""

    def __init__(self, message: str) -> None:
        super().__init__("auth_unavailable", message, 503)


@dataclass(frozen=True)
class Identity:
    """Who made an accepted request: a service account (email) or an API key (``sha256:`` + 12 hex)."""

    kind: Literal["service_account", "api_key"]
    name: str
    claims: Mapping[str, Any] = field(default_factory=dict)
