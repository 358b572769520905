"""The one HTTP client: default timeouts, retries on transient failures (honouring Retry-After), rate limits.

Every upstream call goes through :class:`Http`, so status classification (``common.core.errors``), retries
(tenacity) and per-source pacing (``limits``) live in one place. A few quick in-task retries absorb
blips; anything longer is raised as :class:`TransientError` for Cloud Tasks to retry with backoff.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import limits
import limits.storage
import limits.strategies
import tenacity
import tenacity.stop

from common.core.errors import PermanentError, TransientError, classify_http_status, parse_retry_after

#: ``TRIBUTARY_HTTP_READ_TIMEOUT`` (seconds between bytes) lowers it, e.g. for the fault-injection suite.
DEFAULT_TIMEOUT = httpx.Timeout(
    connect=10.0, read=float(os.environ.get("TRIBUTARY_HTTP_READ_TIMEOUT") or 60.0), write=60.0, pool=10.0
)
USER_AGENT = "tributary/0.1 (+https://github.com/tributary)"
#: In-task retries before the error goes back to Cloud Tasks.
MAX_TRIES = 3
#: Never sleep longer than this inside a task for one Retry-After; longer waits go back to the queue.
MAX_INLINE_WAIT = 30.0
#: Refuse upstream payloads larger than this (a protective bound, overridable per call and by
#: ``TRIBUTARY_MAX_DOWNLOAD_BYTES``).
DEFAULT_MAX_BYTES = int(os.environ.get("TRIBUTARY_MAX_DOWNLOAD_BYTES") or 2 * 1024**3)


@dataclass(frozen=True)
class Download:
    """A body streamed to disk, with its size and md5."""

    path: Path
    size: int
    md5: str
    content_type: str


class _StopOnLongWait(tenacity.stop.stop_base):
    """Stop retrying in the task when the upstream asks for a wait longer than ``MAX_INLINE_WAIT``."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        return isinstance(exc, TransientError) and (exc.retry_after or 0) > MAX_INLINE_WAIT


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """One TLS context per process, shared by every client (an ``SSLContext`` is safe to share between threads).

    httpx builds a new one for each client, and loading the CA bundle into it costs about 25 ms of CPU:
    for every task, most of what a small ingestion spent. ``SSL_CERT_FILE``/``SSL_CERT_DIR`` are honoured
    as httpx does, once.
    """
    return httpx.create_ssl_context()


class Http:
    """An httpx client with retries and an optional rate limit (e.g. ``"120/minute"``).

    ``transport`` lets tests stand in for the network (``httpx.MockTransport``) without patching.
    """

    def __init__(
        self,
        *,
        rate: str | None = None,
        name: str = "default",
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_tries: int = MAX_TRIES,
    ) -> None:
        self._client = httpx.Client(
            verify=tls_context(),
            timeout=timeout,
            follow_redirects=True,
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            transport=transport,
        )
        self._name = name
        self._max_tries = max_tries
        self._rate = limits.parse(rate) if rate else None
        # Only with a rate: limits' MemoryStorage starts a timer thread as it is made.
        self._limiter = limits.strategies.MovingWindowRateLimiter(limits.storage.MemoryStorage()) if rate else None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Http:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pace(self) -> None:
        """Block until the rate limit allows one more request (bounded by the limit's window)."""
        if self._rate is None or self._limiter is None:
            return
        deadline = time.monotonic() + self._rate.get_expiry() + 1
        while not self._limiter.hit(self._rate, self._name):
            reset_at, _ = self._limiter.get_window_stats(self._rate, self._name)
            if time.monotonic() > deadline:
                raise TransientError(f"rate limit {self._rate} for {self._name} did not free up in time")
            time.sleep(min(max(reset_at - time.time(), 0.01), 1.0))

    def _retrying(self) -> tenacity.Retrying:
        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, TransientError) and exc.retry_after is not None:
                return exc.retry_after
            return float(min(2 ** (state.attempt_number - 1), 8))

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientError),
            stop=tenacity.stop_any(
                tenacity.stop_after_attempt(self._max_tries), tenacity.stop_before_delay(120), _StopOnLongWait()
            ),
            wait=wait,
            reraise=True,
        )

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self._pace()
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientError(f"timed out talking to {_without_query(url)}: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"connection to {_without_query(url)} failed: {_reason(exc)}") from exc
        _raise_for_status(response)
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """GET with retries; non-2xx raises per ``classify_http_status``.

        Raises:
            TransientError: 408/429/5xx, timeouts and resets that outlasted the in-task retries.
            PermanentError: other 4xx.
        """
        for attempt in self._retrying():
            with attempt:
                return self._send("GET", url, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    def download(self, url: str, dest: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, **kwargs: Any) -> Download:
        """Stream ``url`` into ``dest`` (never all in memory), hashing as it goes; retried like :meth:`get`.

        Raises:
            TransientError: as for :meth:`get`, and for a body cut short.
            PermanentError: other 4xx, or a body larger than ``max_bytes``.
        """
        for attempt in self._retrying():
            with attempt:
                return self._download_once(url, dest, max_bytes=max_bytes, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    def _download_once(self, url: str, dest: Path, *, max_bytes: int, **kwargs: Any) -> Download:
        self._pace()
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._client.stream("GET", url, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for_status(response)
                expected = response.headers.get("Content-Length")
                with dest.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        size += len(chunk)
                        if size > max_bytes:
                            raise PermanentError(f"{_without_query(url)} is larger than the {max_bytes:,}-byte limit")
                        md5.update(chunk)
                        out.write(chunk)
                content_type = response.headers.get("Content-Type", "application/octet-stream")
        except httpx.TimeoutException as exc:
            raise TransientError(f"timed out downloading {_without_query(url)}: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"download of {_without_query(url)} failed: {_reason(exc)}") from exc
        if expected is not None and expected.isdigit() and int(expected) != size:
            raise TransientError(
                f"download of {_without_query(url)} was cut short: {size:,} of {int(expected):,} bytes"
            )
        return Download(path=dest, size=size, md5=md5.hexdigest(), content_type=content_type)


def _reason(exc: Exception) -> str:
    """``ReadError: [Errno 104] Connection reset by peer``: the type, and the text unless it names a URL
    (which may carry a key in its query string)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text and "://" not in text else type(exc).__name__


def _without_query(url: str) -> str:
    """The URL for messages: never its query string, where keys travel."""
    return str(httpx.URL(url).copy_with(query=None))


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    detail = response.text[:300].strip() if response.content else ""
    classify_http_status(
        response.status_code,
        url=str(response.url.copy_with(query=None)),
        detail=detail,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )
