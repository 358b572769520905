"""The error tree, and the one place that classifies HTTP statuses.

::

    IngestError                 anything that stops a job or a part of it
    ├── TransientError          worth retrying: 429, 5xx, timeouts, resets (carries retry_after)
    │   └── UpstreamTransient   an upstream answer worth retrying (also an UpstreamHTTPError)
    ├── PermanentError          retrying will not help: other 4xx, bad checksum, schema violation
    │   ├── UpstreamPermanent   an upstream answer that retrying will not fix (also an UpstreamHTTPError)
    │   ├── ConfigError         a missing secret or setting; raised before any work starts
    │   └── BadParams           the job's params are invalid (the API answers 400 with these)
    ├── UpstreamHTTPError       mixin of the two upstream errors: status, url, excerpt, retry_after
    └── SkippableRecord         one bad record, dropped and counted; the job goes on

An upstream failure is classified by its class, never by its message: ``isinstance(exc, TransientError)``
and ``exc.status`` are what code reads; ``str(exc)`` is for people.

Only ``common.runtime.outcomes`` maps these to transport answers (HTTP status for Cloud Tasks, raise or ack
for Pub/Sub). Business code raises; it never chooses a status code.
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["transient", "permanent"]


class IngestError(Exception):
    """Base of every error Tributary raises on purpose. ``status`` is the upstream HTTP status, if any."""

    kind: ErrorKind = "permanent"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def to_dict(self) -> dict[str, str]:
        """The ``error`` object stored on a job and carried by events."""
        return {"kind": self.kind, "type": type(self).__name__, "message": self.message}


class TransientError(IngestError):
    """A failure that may pass: retry later (after ``retry_after`` seconds when the upstream said)."""

    kind: ErrorKind = "transient"

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class PermanentError(IngestError):
    """A failure that retrying cannot fix. The job fails at once with this message."""

    kind: ErrorKind = "permanent"


class ConfigError(PermanentError):
    """A missing or invalid secret or setting, found before any work starts."""


class BadParams(PermanentError):
    """Invalid job params. ``field`` names the offending field for the API's 400 answer."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SkippableRecord(IngestError):
    """One malformed record: it is skipped and counted, and the job goes on."""


class UpstreamHTTPError(IngestError):
    """An upstream answered with a failure, as fields (like httpx's ``HTTPStatusError.response``).

    ``url`` is the request URL without its query string (where keys travel) and with any secret redacted;
    ``excerpt`` is the start of the body (redacted too); ``retry_after`` is the upstream's ``Retry-After``
    in seconds. The message reads "upstream answered 503 from https://...: busy" unless a source gives
    its own. Raise :class:`UpstreamTransient` or :class:`UpstreamPermanent`, never this class itself.
    """

    def __init__(
        self,
        status: int,
        url: str,
        *,
        excerpt: str = "",
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(message or upstream_message(status, url, excerpt), status=status)
        self.status: int = status
        self.url, self.excerpt, self.retry_after = url, excerpt, retry_after


class UpstreamTransient(UpstreamHTTPError, TransientError):
    """An upstream failure worth retrying (429, 408, 5xx, or what a source's classifier says passes)."""


class UpstreamPermanent(UpstreamHTTPError, PermanentError):
    """An upstream failure that retrying will not fix (other 4xx, or an error body a source recognises)."""


def upstream_message(status: int, url: str, excerpt: str = "") -> str:
    """The readable sentence for an upstream failure: "upstream answered 404 from https://...: not found"."""
    return f"upstream answered {status} from {url}" + (f": {excerpt}" if excerpt else "")


def is_transient_status(status: int) -> bool:
    """429, 408 and 5xx are worth retrying; every other 4xx is not."""
    return status in (408, 429) or status >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is true too, and float() refuses it
        return float(value)
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
