"""OFAC SDN list: the four legacy CSV files, as full snapshots deduplicated by content hash."""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

from pydantic import Field, field_validator

from common.core.errors import PermanentError, TransientError, UpstreamHTTPError
from common.sources.base import Column, Context, LoadRule, Params, Part, QueueConfig, Raw, Record, Schedule, Source

#: OFAC's Sanctions List Service; the old www.treasury.gov/ofac/downloads/*.csv URLs redirect here.
DEFAULT_BASE_URL = "https://sanctionslistservice.ofac.treas.gov/api/PublicationPreview/exports"
#: OFAC's null marker. The spec says "-0-"; the real files write it unquoted with a trailing space ("-0- ").
NULL_MARKER = "-0-"
#: MS-DOS end-of-file byte that OFAC appends after the last record of sdn/add/alt.
EOF_BYTE = b"\x1a"
#: A CR not followed by LF (the data specification says records end with CR; the real files use CRLF).
BARE_CR = re.compile(rb"(?<=\r)(?!\n)")
#: Protective bound on one downloaded file (the real SDN.CSV is a few MB).
MAX_FILE_BYTES = 200 * 1024**2
#: Bytes hashed per read.
CHUNK = 1 << 20

_S, _I = "STRING", "INT64"


def _cols(*spec: tuple[str, str, str]) -> tuple[Column, ...]:
    return tuple(Column(name, type_, "REQUIRED" if type_ == _I else "NULLABLE", desc) for name, type_, desc in spec)


#: sdn.csv: 12 fields (OFAC data specification). Tonnage and GRT are text there ("99,144"), so STRING here.
SDN = _cols(
    ("ent_num", _I, "unique listing identifier; links add/alt/comments"),
    ("sdn_name", _S, "name of the SDN"),
    ("sdn_type", _S, "individual, vessel or aircraft; NULL for entities"),
    ("program", _S, "sanctions program(s); several are joined by '] [', e.g. 'IRAN] [SDGT'"),
    ("title", _S, "title of an individual"),
    ("call_sign", _S, "vessel call sign"),
    ("vess_type", _S, "vessel type"),
    ("tonnage", _S, "vessel tonnage, as published (may hold thousands separators)"),
    ("grt", _S, "gross registered tonnage, as published"),
    ("vess_flag", _S, "vessel flag"),
    ("vess_owner", _S, "vessel owner"),
    ("remarks", _S, "remarks; cut at 1000 characters, the rest is in the comments stream"),
)
#: add.csv: 6 fields.
ADD = _cols(
    ("ent_num", _I, "link to the SDN listing"),
    ("add_num", _I, "unique address identifier"),
    ("address", _S, "street address"),
    ("city_state_postal_code", _S, "city, state/province, postal code"),
    ("country", _S, "country of the address"),
    ("add_remarks", _S, "remarks on the address"),
)
#: alt.csv: 5 fields.
ALT = _cols(
    ("ent_num", _I, "link to the SDN listing"),
    ("alt_num", _I, "unique alias identifier"),
    ("alt_type", _S, "aka, fka or nka"),
    ("alt_name", _S, "alternate name"),
    ("alt_remarks", _S, "remarks on the alternate name"),
)
#: sdn_comments.csv: 2 fields; remarks_extended continues sdn.remarks exactly (often mid-word).
COMMENTS = _cols(
    ("ent_num", _I, "link to the SDN listing"),
    ("remarks_extended", _S, "the rest of sdn.remarks beyond 1000 characters; append it verbatim"),
)
#: Added to every stream: which version of the upstream file a row comes from.
FILE_COLUMNS = (
    Column("file_sha256", _S, "REQUIRED", "sha256 of the upstream file this row was parsed from"),
    Column("file_seen_at", "TIMESTAMP", "NULLABLE", "when Tributary planned the ingestion of that file version"),
)

Stream = Literal["sdn", "add", "alt", "comments"]


@dataclass(frozen=True)
class FileSpec:
    """One upstream CSV file: its name and its fields in order."""

    file: str
    fields: tuple[Column, ...]
    #: OFAC never publishes an empty SDN list; an empty sdn file is a broken download.
    must_have_rows: bool = False


STREAMS: dict[str, FileSpec] = {
    "sdn": FileSpec("SDN.CSV", SDN, must_have_rows=True),
    "add": FileSpec("ADD.CSV", ADD),
    "alt": FileSpec("ALT.CSV", ALT),
    "comments": FileSpec("SDN_COMMENTS.CSV", COMMENTS),
}
ALL_STREAMS: tuple[Stream, ...] = ("sdn", "add", "alt", "comments")


class OfacParams(Params):
    """Which files to check; each is ingested only when its content changed since the last stored version."""

    streams: tuple[Stream, ...] = Field(ALL_STREAMS, min_length=1, description="sdn, add, alt, comments")
    #: Ingest even an unchanged file (rewrites the same object names: a repair, never a duplicate).
    force: bool = False

    @field_validator("streams")
    @classmethod
    def _unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cursor_value(seen_at: str, sha256: str) -> str:
    """``<seen_at>/<sha256>``: grows with time (cursors only move forward) and carries the file's hash."""
    return f"{seen_at}/{sha256}"


def cursor_sha256(cursor: str | None) -> str | None:
    return cursor.rsplit("/", 1)[-1] if cursor else None


class Ofac(Source):
    name = "ofac"
    #: The SDN list as a downloadable file begins in 1995 (each job fetches the current snapshot anyway).
    earliest = datetime(1995, 1, 1, tzinfo=UTC)
    description = "OFAC SDN list (sdn, add, alt, comments CSV files), stored when a file's content changes"
    # OFAC updates the list on "no predetermined timetable" (its FAQ 20): poll hourly; an unchanged
    # file costs one download and writes nothing.
    schedule = Schedule(cron="20 * * * *", time_zone="UTC")
    # One static-file host with no published limits: few, gentle requests; a part is a few MB.
    queue = QueueConfig(
        max_dispatches_per_second=1,
        max_concurrent_dispatches=2,
        max_attempts=6,
        min_backoff=60,
        max_backoff=1800,
        dispatch_deadline=900,
    )
    http_rate = "30/minute"
    params_model = OfacParams
    default_base_url = DEFAULT_BASE_URL
    schemas = {stream: spec.fields + FILE_COLUMNS for stream, spec in STREAMS.items()}
    #: Each file is a snapshot of the whole list: loading it replaces the table.
    load_rules = {stream: LoadRule("replace", scope="table", cluster=("ent_num",)) for stream in STREAMS}
    demo_params = {"streams": list(ALL_STREAMS)}

    def dedup_params(self, params: Params, now: datetime) -> dict[str, object]:
        # The params always mean "the current files": one job per hour window, a new one after.
        out = super().dedup_params(params, now)
        window = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        out["latest_as_of"] = window.strftime("%Y-%m-%dT%H")
        return out

    def plan(self, params: Params, ctx: Context) -> list[Part]:
        """Download each file, hash it, and plan a part only for files whose hash differs from the cursor.

        An empty plan means every requested file is unchanged: nothing is written.
        """
        assert isinstance(params, OfacParams)
        seen_at = ctx.now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        changed: list[tuple[str, str]] = []
        for stream in params.streams:
            path = self._download(STREAMS[stream].file, ctx)
            digest = sha256_file(path)
            if params.force or cursor_sha256(ctx.state.cursors.get(stream)) != digest:
                changed.append((stream, digest))
        return [
            Part(
                key=f"{stream}-{digest[:16]}",
                index=index,
                total=len(changed),
                stream=stream,
                cursor=stream,
                params={"file": STREAMS[stream].file, "sha256": digest, "seen_at": seen_at},
            )
            for index, (stream, digest) in enumerate(changed)
        ]

    def fetch(self, part: Part, ctx: Context) -> Raw:
        """The planned version of the file (reused from planning when it ran in this task).

        Raises:
            PermanentError: the file changed upstream since planning (the next run ingests the new one).
        """
        file, planned = part.params["file"], part.params["sha256"]
        path = ctx.workdir / file
        if not (path.is_file() and sha256_file(path) == planned):
            path = self._download(file, ctx)
        digest = sha256_file(path)
        if digest != planned:
            raise PermanentError(
                f"OFAC {file} changed upstream after this job was planned (planned sha256 {planned[:16]}…, "
                f"now {digest[:16]}…); the next run ingests the new version"
            )
        stem, _, ext = file.rpartition(".")
        return Raw(
            path=path,
            size=path.stat().st_size,
            name=f"{stem}-{digest[:16]}.{ext}",
            content_type="text/csv",
            meta={"sha256": digest},
        )

    def parse(self, stream: IO[bytes], part: Part) -> Iterator[Record]:
        spec = STREAMS.get(part.stream)
        if spec is None:
            raise PermanentError(f"unknown OFAC stream {part.stream!r}; known: {', '.join(STREAMS)}")
        return parse_csv(stream, spec, seen_at=part.params.get("seen_at"))

    def watermark(self, part: Part, records: int) -> str | None:
        return cursor_value(part.params["seen_at"], part.params["sha256"])

    def _download(self, file: str, ctx: Context) -> Path:
        """``file`` into the workdir, checked to be a CSV and not an HTML page answered with 200.

        Raises:
            TransientError: 429/5xx/timeouts, or an HTML page instead of the file.
            PermanentError: other 4xx; the message names the file (OFAC needs no key: 401/403 is a block).
        """
        dest = ctx.workdir / file
        try:
            ctx.http.download(f"{ctx.base_url}/{file}", dest, max_bytes=MAX_FILE_BYTES)
        except PermanentError as exc:
            hint = ""
            if isinstance(exc, UpstreamHTTPError) and exc.status in (401, 403):
                hint = " (OFAC's files need no key: a 401/403 means a proxy, firewall or changed URL refused us)"
            raise PermanentError(f"OFAC {file} download failed: {exc.message}{hint}") from exc
        with dest.open("rb") as f:
            head = f.read(512).lstrip()
        if head.startswith(b"<"):
            snippet = head[:80].decode("ascii", "replace")
            raise TransientError(f"OFAC {file}: the server answered a web page instead of the CSV: {snippet!r}")
        return dest


def _lines(stream: IO[bytes]) -> Iterator[str]:
    """Text lines (line endings kept, for the csv module), without OFAC's trailing end-of-file byte.

    The real files end lines with CRLF; the specification says CR, so a bare CR also ends a line.
    The specification says ASCII and every real file is; a line that is not UTF-8 is read as cp1252
    rather than failing a whole sanctions list on one accented byte.
    """
    for chunk in stream:
        yield from _decoded(raw for raw in BARE_CR.split(chunk) if raw)


def _decoded(lines: Iterator[bytes]) -> Iterator[str]:
    for raw in lines:
        body = raw.rstrip(b"\r\n")
        if body.endswith(EOF_BYTE):
            raw = body[: -len(EOF_BYTE)] + raw[len(body) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            yield raw.decode("cp1252", errors="replace")


def parse_csv(stream: IO[bytes], spec: FileSpec, *, seen_at: str | None = None) -> Iterator[Record]:
    """Records of one OFAC legacy CSV file: no header, ``-0-`` for NULL, CRLF, a trailing 0x1A.

    Values are kept exactly as published (no trimming: ``remarks_extended`` may begin with the space
    that ``remarks`` was cut before). Every row must have the file's field count: a sanctions record
    is never dropped silently.

    Raises:
        PermanentError: a wrong field count, a non-integer id, malformed quoting, or an empty SDN file;
            the message names the file, the line and the problem.
    """
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    stream.seek(0)
    sha = digest.hexdigest()
    seen = datetime.strptime(seen_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if seen_at else None
    names = [c.name for c in spec.fields]
    integers = {c.name for c in spec.fields if c.type == _I}
    reader = csv.reader(_lines(stream), strict=True)
    count = 0
    try:
        for row in reader:
            if not row or row == [""]:
                continue
            line = reader.line_num
            if len(row) != len(names):
                raise PermanentError(
                    f"{spec.file} line {line}: {len(row)} fields, expected {len(names)} "
                    f"({', '.join(names)}); is this really OFAC's {spec.file}? starts with {row[0][:40]!r}"
                )
            record: Record = {}
            for name, value in zip(names, row, strict=True):
                if value.strip() in (NULL_MARKER, ""):
                    if name in integers:
                        raise PermanentError(f"{spec.file} line {line}: {name} is missing")
                    record[name] = None
                elif name in integers:
                    if not (value.strip().isascii() and value.strip().isdigit()):
                        raise PermanentError(f"{spec.file} line {line}: {name} {value[:40]!r} is not an integer")
                    record[name] = int(value)
                else:
                    record[name] = value
            record["file_sha256"] = sha
            record["file_seen_at"] = seen
            count += 1
            yield record
    except csv.Error as exc:
        raise PermanentError(f"{spec.file} line {reader.line_num}: malformed CSV: {exc}") from exc
    if count == 0 and spec.must_have_rows:
        raise PermanentError(f"{spec.file} holds no records: OFAC never publishes an empty SDN list (broken download)")
