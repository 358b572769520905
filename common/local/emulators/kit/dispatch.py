"""HTTP dispatch of a task or job to its target, with the OIDC token attached: one place for both emulators."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from common.local.emulators.kit.rpc import Code, http_to_code
from common.local.emulators.oidc import LocalSigner

log = logging.getLogger("tributary.emulators.dispatch")


@dataclass(frozen=True)
class Oidc:
    """``oidc_token`` of a task or job: the token's audience and the service account it is minted for."""

    audience: str
    email: str


@dataclass(frozen=True)
class Answer:
    """What one request came to: the HTTP ``status``, or ``None`` with the ``code`` and ``detail`` of the failure."""

    status: int | None
    code: Code
    detail: str = ""
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Dispatcher:
    """An httpx client that sends one attempt at a time, overall-bounded by its deadline, with the OIDC token
    from ``signer()`` (called per request, so the signer can be created on first use)."""

    def __init__(self, signer: Callable[[], LocalSigner]) -> None:
        self._signer = signer
        self._client: httpx.Client | None = None

    def open(self) -> None:
        self._client = httpx.Client(
            trust_env=False,
            follow_redirects=True,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
        )

    def close(self) -> None:
        """Close the client; requests still in flight are aborted, so their threads end quickly."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes, deadline: float, oidc: Oidc | None
    ) -> Answer:
        """Send one request; never raises. Any ``Authorization`` header is replaced by the OIDC token's."""
        started = time.monotonic()
        client = self._client
        if client is None:
            return Answer(None, Code.UNAVAILABLE, "the emulator is stopped")
        try:
            headers = dict(headers)
            if oidc is not None:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                headers["Authorization"] = f"Bearer {self._signer().sign_id_token(oidc.audience, oidc.email)}"
            resp = client.request(method, url, headers=headers, content=body or None, timeout=httpx.Timeout(deadline))
        except httpx.TimeoutException as exc:
            return Answer(None, Code.DEADLINE_EXCEEDED, type(exc).__name__, time.monotonic() - started)
        except httpx.HTTPError as exc:
            return Answer(None, Code.UNAVAILABLE, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
        except Exception as exc:  # never lose the attempt's bookkeeping
            log.exception("dispatch to %s failed", url)
            return Answer(None, Code.INTERNAL, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
        elapsed = time.monotonic() - started
        if elapsed > deadline:  # httpx times each phase; the deadline is overall
            return Answer(None, Code.DEADLINE_EXCEEDED, "overall deadline", elapsed)
        return Answer(resp.status_code, http_to_code(resp.status_code), "", elapsed)
