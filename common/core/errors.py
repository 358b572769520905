"""The error tree, and the one place that classifies HTTP statuses.

::

    IngestError                 anything that stops a job or a part of it
    ├── TransientError          worth retrying: 429, 5xx, timeouts, resets (carries retry_after)
    ├── PermanentError          retrying will not help: other 4xx, bad checksum, schema violation
    │   ├── ConfigError         a missing secret or setting; raised before any work starts
    │   └── BadParams           the job's params are invalid (the API answers 400 with these)
    └── SkippableRecord         one bad record, dropped and counted; the job goes on

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


def classify_http_status(status: int, *, url: str, detail: str = "", retry_after: float | None = None) -> None:
    """Raise the right error for a non-2xx upstream ``status``; return for 2xx/3xx.

    429, 408 and 5xx are transient; every other 4xx is permanent.

    Raises:
        TransientError: for 408, 429 and 5xx.
        PermanentError: for any other 4xx.
    """
    if status < 400:
        return
    what = f"{status} from {url}" + (f": {detail}" if detail else "")
    if status in (408, 429) or status >= 500:
        raise TransientError(f"upstream answered {what}", retry_after=retry_after, status=status)
    raise PermanentError(f"upstream answered {what}", status=status)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
