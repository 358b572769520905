"""The one HTTP client: default timeouts, retries on transient failures (honouring Retry-After), rate limits.

Every upstream call goes through :class:`Http`, so status classification (``common.core.errors``), retries
(tenacity) and per-source pacing (``limits``) live in one place. A few quick in-task retries absorb
blips; anything longer is raised as :class:`TransientError` for Cloud Tasks to retry with backoff.

A failed answer is raised as an :class:`~common.core.errors.UpstreamHTTPError` with fields (status, url,
excerpt, retry_after). A source that knows its upstream better passes ``classify=``: a hook that sees
each response inside the retry loop and may return the error it stands for (a transient 400, a 200
with an error body), so the loop retries what passes. :func:`redact` is the one way secrets leave
URLs, bodies and messages.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import time
from collections.abc import Collection, Mapping
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

from common.core.errors import PermanentError, TransientError
from common.settings import settings
from common.sources.base import Classify, default_classify, redact, response_error, safe_url

__all__ = [
    "Classify",
    "Download",
    "Http",
    "default_classify",
    "redact",
    "response_error",
    "safe_url",
    "tls_context",
]

USER_AGENT = "tributary/0.1 (+https://github.com/tributary)"
#: In-task retries before the error goes back to Cloud Tasks.
MAX_TRIES = 3
#: Never sleep longer than this inside a task for one Retry-After; longer waits go back to the queue.
MAX_INLINE_WAIT = 30.0


def default_timeout() -> httpx.Timeout:
    """The client's timeouts; the read timeout (seconds between bytes) is ``settings().http_read_timeout``,
    which the fault-injection suite lowers."""
    return httpx.Timeout(connect=10.0, read=settings().http_read_timeout, write=60.0, pool=10.0)


class _RedactLog(logging.Filter):
    """httpx logs each request's full URL at INFO, keys in its query included: mask them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else _redact_url(a) for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def _redact_url(value: object) -> object:
    return redact(str(value)) if isinstance(value, httpx.URL) else value


def _quiet_secrets_in_httpx_logs() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactLog) for f in logger.filters):
        logger.addFilter(_RedactLog())


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
    ``classify`` is the default response hook (see :data:`Classify`); a request's own ``classify=``
    replaces it.
    """

    def __init__(
        self,
        *,
        rate: str | None = None,
        name: str = "default",
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
        max_tries: int = MAX_TRIES,
        classify: Classify | None = None,
    ) -> None:
        # Built on the first request (``client``): a task whose plan finds nothing, or a part read from a cache,
        # never pays for a client (about 1 ms of CPU with its proxy lookup) or a limiter (a timer thread).
        self._options: dict[str, Any] = {
            "timeout": timeout or default_timeout(),
            "follow_redirects": True,
            "headers": {"User-Agent": USER_AGENT, **(headers or {})},
            "transport": transport,
        }
        self._client: httpx.Client | None = None
        self._name = name
        self._classify = classify
        self._max_tries = max_tries
        self._rate = limits.parse(rate) if rate else None
        self._limiter: limits.strategies.MovingWindowRateLimiter | None = None
        _quiet_secrets_in_httpx_logs()

    @property
    def client(self) -> httpx.Client:
        """The httpx client, made on first use."""
        if self._client is None:
            self._client = httpx.Client(verify=tls_context(), **self._options)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> Http:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pace(self) -> None:
        """Block until the rate limit allows one more request (bounded by the limit's window)."""
        if self._rate is None:
            return
        if self._limiter is None:  # limits' MemoryStorage starts a timer thread as it is made
            self._limiter = limits.strategies.MovingWindowRateLimiter(limits.storage.MemoryStorage())
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

    def _check(self, response: httpx.Response, classify: Classify | None, secrets: Collection[str]) -> None:
        """Raise what ``response`` stands for: the hook's verdict first, then the status's."""
        hook = classify or self._classify
        error = (hook(response) if hook else None) or default_classify(response, secrets)
        if error is not None:
            raise error

    def _send(
        self, method: str, url: str, classify: Classify | None, secrets: Collection[str], **kwargs: Any
    ) -> httpx.Response:
        self._pace()
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientError(f"timed out talking to {safe_url(url, secrets)}: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"connection to {safe_url(url, secrets)} failed: {_reason(exc)}") from exc
        self._check(response, classify, secrets)
        return response

    def get(
        self, url: str, *, classify: Classify | None = None, secrets: Collection[str] = (), **kwargs: Any
    ) -> httpx.Response:
        """GET with retries. Each response goes through ``classify`` (or the client's hook) inside the retry
        loop, then the status decides; ``secrets`` are redacted from any error.

        Raises:
            UpstreamTransient: 408/429/5xx (or what ``classify`` calls transient) that outlasted the retries.
            UpstreamPermanent: other 4xx (or what ``classify`` calls permanent).
            TransientError: timeouts and resets that outlasted the in-task retries.
        """
        for attempt in self._retrying():
            with attempt:
                return self._send("GET", url, classify, secrets, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    def download(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int | None = None,
        classify: Classify | None = None,
        secrets: Collection[str] = (),
        **kwargs: Any,
    ) -> Download:
        """Stream ``url`` into ``dest`` (never all in memory), hashing as it goes; retried like :meth:`get`.

        ``classify`` sees failed answers only (with their body read): a 2xx body goes to disk unread.
        ``max_bytes`` defaults to ``settings().max_download_bytes`` (a protective bound, 2 GiB).

        Raises:
            TransientError: as for :meth:`get`, and for a body cut short.
            PermanentError: other 4xx, or a body larger than ``max_bytes``.
        """
        for attempt in self._retrying():
            with attempt:
                limit = max_bytes or settings().max_download_bytes
                return self._download_once(url, dest, limit, classify, secrets, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    def _download_once(
        self,
        url: str,
        dest: Path,
        max_bytes: int,
        classify: Classify | None,
        secrets: Collection[str],
        **kwargs: Any,
    ) -> Download:
        self._pace()
        where = safe_url(url, secrets)
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.client.stream("GET", url, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    self._check(response, classify, secrets)
                expected = response.headers.get("Content-Length")
                with dest.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        size += len(chunk)
                        if size > max_bytes:
                            raise PermanentError(f"{where} is larger than the {max_bytes:,}-byte limit")
                        md5.update(chunk)
                        out.write(chunk)
                content_type = response.headers.get("Content-Type", "application/octet-stream")
        except httpx.TimeoutException as exc:
            raise TransientError(f"timed out downloading {where}: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"download of {where} failed: {_reason(exc)}") from exc
        if expected is not None and expected.isdigit() and int(expected) != size:
            raise TransientError(f"download of {where} was cut short: {size:,} of {int(expected):,} bytes")
        return Download(path=dest, size=size, md5=md5.hexdigest(), content_type=content_type)


def _reason(exc: Exception) -> str:
    """``ReadError: [Errno 104] Connection reset by peer``: the type, and the text unless it names a URL
    (which may carry a key in its query string)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text and "://" not in text else type(exc).__name__
