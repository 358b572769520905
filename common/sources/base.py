"""The source contract: what a connector declares (name, schedule, queue, secrets, params, schema) and does.

A source is one module in ``common/sources/`` with one subclass of :class:`Source`. The runner
(``common.runtime.ingest``) calls ``plan`` once per job, then ``fetch`` and ``parse`` once per part::

    plan(params, ctx)   -> [Part, ...]          each part finishes well inside the 30-min dispatch deadline
    fetch(part, ctx)    -> Raw                  download (and verify) to a local file; no parsing
    parse(stream, part) -> Iterator[record]     pure: bytes in, dicts (or Arrow record batches) out

``parse`` never touches the network or the clock, so it is tested on recorded payloads alone.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from common.core.errors import (
    BadParams,
    IngestError,
    UpstreamHTTPError,
    UpstreamPermanent,
    UpstreamTransient,
    is_transient_status,
    parse_retry_after,
    upstream_message,
)
from common.core.paging import OffsetPaginator, PageNumberPaginator, Paginator
from common.core.schema import Column
from common.core.source_state import SourceState
from common.core.tasks import Part, QueueConfig
from common.core.warehouse import DEFAULT_RULE, LoadRule
from common.sources.context import Context

if TYPE_CHECKING:  # pragma: no cover
    import httpx
    import pyarrow as pa

__all__ = [
    "Classify",
    "Column",
    "Context",
    "LoadRule",
    "OffsetPaginator",
    "PageNumberPaginator",
    "Paginator",
    "Params",
    "Part",
    "QueueConfig",
    "Raw",
    "Record",
    "Schedule",
    "Source",
    "SourceState",
    "default_classify",
    "iter_records",
    "redact",
    "response_error",
    "safe_url",
]


#: The annotations of a boolean params field.
BOOL_TYPES: tuple[Any, ...] = (bool, bool | None)


@dataclass(frozen=True)
class Schedule:
    """When the scheduler triggers the source: a 5-field cron evaluated in ``time_zone``."""

    cron: str
    time_zone: str = "UTC"


class Params(BaseModel):
    """Base of every source's params model: unknown fields are rejected, so typos fail loudly, and a boolean
    field takes a JSON boolean only (pydantic's lax mode would also take 0, 1, "yes" or "on").

    ``internal`` names fields only the service itself sets (a planner's hints, e.g. GDELT's listed sizes
    for backfill children): callers are refused them, so no caller can steer a job another caller shares.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    internal: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _strict_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and field.annotation in BOOL_TYPES and not isinstance(value, bool | None):
            raise ValueError("must be a JSON boolean, true or false")
        return value


@dataclass
class Raw:
    """A fetched, verified upstream payload on local disk."""

    path: Path
    size: int
    #: Name of the raw object (e.g. the upstream file name); its extension is kept.
    name: str
    content_type: str = "application/octet-stream"
    meta: dict[str, Any] = field(default_factory=dict)

    def open(self) -> IO[bytes]:
        return self.path.open("rb")


Record = dict[str, Any]


class Source(ABC):
    """A connector. Subclasses set the class attributes and implement plan, fetch and parse."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    schedule: ClassVar[Schedule]
    queue: ClassVar[QueueConfig] = QueueConfig()
    #: Secret names the source needs (looked up before any work starts; a missing one fails the job).
    secrets: ClassVar[tuple[str, ...]] = ()
    params_model: ClassVar[type[Params]]
    default_base_url: ClassVar[str]
    #: Output schema per stream.
    schemas: ClassVar[Mapping[str, tuple[Column, ...]]]
    #: How each stream's outputs load into the warehouse (docs/warehouse.md); a stream not named here
    #: replaces the rows of the same output.
    load_rules: ClassVar[Mapping[str, LoadRule]] = {}
    #: Memory for the ingest function (deploy sizing), e.g. "512Mi".
    memory: ClassVar[str] = "512Mi"
    #: Upstream request budget for the shared HTTP client, in ``limits`` notation ("120/minute").
    http_rate: ClassVar[str | None] = None
    #: Params ``make demo`` submits (served by the bundled samples).
    demo_params: ClassVar[Mapping[str, Any]] = {}
    #: Params of the job that a scheduler tick or run-daily submits (the source's incremental default).
    daily_params: ClassVar[Mapping[str, Any]] = {}
    #: How much of a backfill range one child job covers (sources with start/end params).
    backfill_window: ClassVar[timedelta] = timedelta(days=1)
    #: The first moment the source has data for (UTC): a backfill starting earlier is refused.
    earliest: ClassVar[datetime] = datetime(1970, 1, 1, tzinfo=UTC)

    @classmethod
    def base_url(cls) -> str:
        """The upstream base URL: ``TRIBUTARY_<NAME>_BASE_URL`` when set (mirrors, replay servers)."""
        return os.environ.get(f"TRIBUTARY_{cls.name.upper()}_BASE_URL", cls.default_base_url).rstrip("/")

    def load_rule(self, stream: str) -> LoadRule:
        """The load rule of ``stream``: declared in ``load_rules``, else replace the output's own rows."""
        return self.load_rules.get(stream, DEFAULT_RULE)

    def validate_params(self, raw: Mapping[str, Any], *, trusted: bool = False) -> Params:
        """The params as the source's model. Only ``trusted`` params (planned by the service itself: backfill
        children, a task's payload) may carry the model's ``internal`` fields.

        Raises:
            BadParams: naming the first invalid field, or an internal field from a caller.
        """
        if not trusted:
            for name in sorted(self.params_model.internal & set(raw)):
                raise BadParams(
                    f"params.{name}: is set by the service's own planner and is not accepted from callers",
                    field=f"params.{name}",
                )
        try:
            return self.params_model.model_validate(dict(raw))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "params"
            raise BadParams(f"params.{where}: {err['msg']}", field=f"params.{where}") from exc

    def dedup_params(self, params: Params, now: datetime) -> dict[str, Any]:
        """What identifies a job of these params (the job id is derived from it).

        The default is the params themselves. Sources whose empty params mean "the latest" add the
        current window, so "latest" asked twice in one window is one job, and asked later is a new one.
        """
        return params.model_dump(mode="json", exclude_none=True)

    def backfill(self, start: datetime, end: datetime, params: Params, ctx: Context) -> list[dict[str, Any]]:
        """The params of each child job of a backfill over ``[start, end)`` (UTC).

        The default splits the range into ``backfill_window`` windows for sources whose params have
        ``start`` and ``end`` fields (ISO dates, ``end`` inclusive).

        Raises:
            BadParams: the source cannot backfill, or the range is empty.
        """
        fields = self.params_model.model_fields
        if "start" not in fields or "end" not in fields:
            raise BadParams(f"source {self.name} does not support backfills", field="source")
        base = params.model_dump(mode="json", exclude_none=True, exclude={"start", "end"})
        children = []
        cursor = start
        while cursor < end:
            stop = min(cursor + self.backfill_window, end)
            last = stop - timedelta(days=1) if stop > cursor + timedelta(days=1) else cursor
            children.append({**base, "start": cursor.date().isoformat(), "end": last.date().isoformat()})
            cursor = stop
        return children

    @abstractmethod
    def plan(self, params: Params, ctx: Context) -> list[Part]:
        """Split the job into parts, each well inside the dispatch deadline.

        Raises:
            IngestError: planning needed upstream data that failed.
        """

    @abstractmethod
    def fetch(self, part: Part, ctx: Context) -> Raw:
        """Download and verify one part's payload into ``ctx.workdir``.

        Raises:
            TransientError / PermanentError: as classified by ``common.core.errors``.
        """

    @abstractmethod
    def parse(self, stream: IO[bytes], part: Part) -> Iterable[Record | pa.RecordBatch]:
        """Pure: turn the raw payload into records (dicts) or Arrow record batches of the stream's schema.

        Raises:
            PermanentError: the payload violates the format (the job fails with this message).
        """

    def watermark(self, part: Part, records: int) -> str | None:
        """The watermark reached once ``part`` is stored (compared as strings; larger is newer)."""
        return None


def iter_records(items: Iterable[Record | pa.RecordBatch]) -> Iterator[Record]:
    """Records as dicts, whichever form ``parse`` yields (for tests and small sources)."""
    for item in items:
        if isinstance(item, dict):
            yield item
        else:
            yield from item.to_pylist()


# ------------------------------------------------------------------------------------------ upstream answers
# What a source's ``classify`` hook (``common.sources.http.Http``) builds its errors with. They live here,
# beside the contract, so a source module imports no HTTP client: the api function loads sources to
# validate params, and httpx would add a third of a second to its cold start.

#: How much of a failed answer's body an error keeps.
EXCERPT_CHARS = 300
#: Query parameters whose value is a credential wherever they appear (``api_key=...``, ``access_token=...``,
#: a signed URL's ``X-Amz-Signature=...``): :func:`redact` masks their values even when the secret itself is not known.
SECRET_PARAM_RE = re.compile(r"(?i)\b([\w-]*(?:key|token|secret|password|signature|credential))=[^&\s\"'#]+")
#: Shorter secrets are not replaced in free text: "***" for every "ab" would garble the message.
MIN_SECRET_CHARS = 4

#: A source's view of one response, inside the retry loop: the error it stands for, or None for the default
#: (408/429/5xx transient, other 4xx permanent, 2xx/3xx fine).
Classify = Callable[["httpx.Response"], IngestError | None]


def redact(text: str, secrets: Collection[str] = ()) -> str:
    """``text`` (a URL, a body, a message) with each of ``secrets`` and every credential parameter masked."""
    text = SECRET_PARAM_RE.sub(lambda m: f"{m[1]}=***", text)
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_CHARS:
            text = text.replace(secret, "***")
    return text


def safe_url(url: str | httpx.URL, secrets: Collection[str] = ()) -> str:
    """The URL for errors and messages: without its query string (where keys travel), secrets redacted."""
    return redact(urlsplit(str(url))._replace(query="", fragment="").geturl(), secrets)


def response_error(
    response: httpx.Response,
    *,
    secrets: Collection[str] = (),
    transient: bool | None = None,
    message: str | None = None,
    note: str = "",
) -> UpstreamHTTPError:
    """The structured error ``response`` stands for (read it first if streamed).

    The kind follows the status (408/429/5xx transient) unless ``transient`` says otherwise; ``message``
    replaces the readable sentence and ``note`` is added to it. URL and excerpt are redacted.
    """
    url = safe_url(response.url, secrets)
    excerpt = redact(response.text[:EXCERPT_CHARS].strip(), secrets) if response.content else ""
    status = response.status_code
    text = message or upstream_message(status, url, excerpt) + (f" {note}" if note else "")
    cls = UpstreamTransient if (is_transient_status(status) if transient is None else transient) else UpstreamPermanent
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return cls(status, url, excerpt=excerpt, retry_after=retry_after, message=text)


def default_classify(response: httpx.Response, secrets: Collection[str] = ()) -> UpstreamHTTPError | None:
    """The error a non-2xx ``response`` stands for by its status alone (None for 2xx/3xx)."""
    return response_error(response, secrets=secrets) if response.status_code >= 400 else None
