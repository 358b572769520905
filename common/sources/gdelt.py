"""GDELT 2.0: the 15-minute event, mention and GKG files, verified by size and md5, parsed by Arrow."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from common.core.errors import PermanentError, TransientError
from common.core.schema import arrow_schema
from common.sources.base import Column, Context, Params, Part, QueueConfig, Raw, Schedule, Source

if TYPE_CHECKING:  # pragma: no cover - pyarrow is imported where files are parsed (cold start)
    import pyarrow as pa

FIRST_SLOT = "20150218230000"
SLOT_RE = re.compile(r"^\d{4}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])([01]\d|2[0-3])(00|15|30|45)00$")

_S, _I, _F = "STRING", "INT64", "FLOAT64"


def _cols(spec: str) -> tuple[Column, ...]:
    """Columns from "Name:TYPE" words (compact, and easy to compare with GDELT's codebook)."""
    return tuple(Column(*word.split(":")) for word in spec.split())


_ACTOR = " ".join(
    f"Actor{n}{f}:{_S}"
    for n in (1, 2)
    for f in [
        "Code",
        "Name",
        "CountryCode",
        "KnownGroupCode",
        "EthnicCode",
        "Religion1Code",
        "Religion2Code",
        "Type1Code",
        "Type2Code",
        "Type3Code",
    ]
)
_GEO = " ".join(
    f"{who}Geo_Type:{_I} {who}Geo_FullName:{_S} {who}Geo_CountryCode:{_S} {who}Geo_ADM1Code:{_S} "
    f"{who}Geo_ADM2Code:{_S} {who}Geo_Lat:{_F} {who}Geo_Long:{_F} {who}Geo_FeatureID:{_S}"
    for who in ("Actor1", "Actor2", "Action")
)
#: GDELT 2.0 event export: 61 columns. EventCode, EventBaseCode and EventRootCode are strings: most
#: real CAMEO codes have a leading zero ("043"), which an integer type would destroy.
EVENTS = _cols(
    f"GLOBALEVENTID:{_I} SQLDATE:{_I} MonthYear:{_I} Year:{_I} FractionDate:{_F} {_ACTOR} "
    f"IsRootEvent:{_I} EventCode:{_S} EventBaseCode:{_S} EventRootCode:{_S} QuadClass:{_I} "
    f"GoldsteinScale:{_F} NumMentions:{_I} NumSources:{_I} NumArticles:{_I} AvgTone:{_F} {_GEO} "
    f"DATEADDED:{_I} SOURCEURL:{_S}"
)
#: GDELT 2.0 mentions: 16 columns.
MENTIONS = _cols(
    f"GLOBALEVENTID:{_I} EventTimeDate:{_I} MentionTimeDate:{_I} MentionType:{_I} MentionSourceName:{_S} "
    f"MentionIdentifier:{_S} SentenceID:{_I} Actor1CharOffset:{_I} Actor2CharOffset:{_I} "
    f"ActionCharOffset:{_I} InRawText:{_I} Confidence:{_I} MentionDocLen:{_I} MentionDocTone:{_F} "
    f"MentionDocTranslationInfo:{_S} Extras:{_S}"
)
#: GKG 2.1: 27 columns, mostly delimited sub-lists kept as strings.
GKG = _cols(
    f"GKGRECORDID:{_S} DATE:{_I} SourceCollectionIdentifier:{_I} "
    + " ".join(
        f"{n}:{_S}"
        for n in [
            "SourceCommonName",
            "DocumentIdentifier",
            "Counts",
            "V2Counts",
            "Themes",
            "V2Themes",
            "Locations",
            "V2Locations",
            "Persons",
            "V2Persons",
            "Organizations",
            "V2Organizations",
            "V2Tone",
            "Dates",
            "GCAM",
            "SharingImage",
            "RelatedImages",
            "SocialImageEmbeds",
            "SocialVideoEmbeds",
            "Quotations",
            "AllNames",
            "Amounts",
            "TranslationInfo",
            "Extras",
        ]
    )
)

Stream = Literal["events", "mentions", "gkg"]
#: stream -> (file suffix in the GDELT lists, columns)
STREAMS: dict[str, tuple[str, tuple[Column, ...]]] = {
    "events": ("export.CSV.zip", EVENTS),
    "mentions": ("mentions.CSV.zip", MENTIONS),
    "gkg": ("gkg.csv.zip", GKG),
}
#: Bytes per Arrow CSV block. The streaming reader reads several blocks ahead, so this bounds memory:
#: 1 MiB keeps a 10x slot within +30 MB of a 1x one, where 4 MiB cost +51 MB (BENCHMARKS.md, P3).
BLOCK_SIZE = 1 << 20


def current_slot(now: datetime) -> str:
    """The 15-minute slot ``now`` falls in (the newest one GDELT may publish soon)."""
    window = now.astimezone(UTC).replace(second=0, microsecond=0)
    return (window - timedelta(minutes=window.minute % 15)).strftime("%Y%m%d%H%M%S")


class GdeltParams(Params):
    """``slot`` is a 15-minute slot ``YYYYMMDDHHMMSS``; omitted, the latest published slot."""

    #: ``expected`` is internal (see ``Params.internal``): only the backfill planner sets it.
    internal: ClassVar[frozenset[str]] = frozenset({"expected"})

    slot: str | None = Field(None, description="15-minute slot, YYYYMMDDHHMMSS (UTC); default: the latest")
    streams: tuple[Stream, ...] = Field(("events",), min_length=1, description="events, mentions, gkg")
    #: Listed size and md5 per stream, read by the backfill planner from masterfilelist.txt (saves each child
    #: a read of it). A hint only: a file that does not match it is checked against GDELT's listing again.
    expected: SkipJsonSchema[dict[str, tuple[int, str]] | None] = None

    @field_validator("slot")
    @classmethod
    def _slot(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not SLOT_RE.match(v):
            raise ValueError("must be a 15-minute slot YYYYMMDDHHMMSS with minutes 00, 15, 30 or 45")
        if v < FIRST_SLOT:
            raise ValueError(f"GDELT 2.0 starts at {FIRST_SLOT}")
        if v > current_slot(datetime.now(UTC)):
            raise ValueError("is in the future: GDELT publishes a slot after it ends")
        return v

    @field_validator("streams")
    @classmethod
    def _unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v))


def parse_file_list(text: str) -> Iterator[tuple[int, str, str]]:
    """``(size, md5, url)`` for each well-formed line of ``lastupdate.txt`` / ``masterfilelist.txt``.

    Blank and malformed lines (the real master list has a few) are passed over.
    """
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit() and len(parts[1]) == 32:
            yield int(parts[0]), parts[1], parts[2]


def slot_of(url: str) -> str | None:
    name = url.rsplit("/", 1)[-1]
    return name[:14] if name[:14].isdigit() else None


class Gdelt(Source):
    name = "gdelt"
    #: GDELT 2.0's first 15-minute slot (FIRST_SLOT): nothing older is published.
    earliest = datetime(2015, 2, 18, 23, 0, tzinfo=UTC)
    description = "GDELT 2.0 event, mention and GKG files, published every 15 minutes"
    schedule = Schedule(cron="3,18,33,48 * * * *", time_zone="UTC")
    # data.gdeltproject.org is a static file host; keep it polite and let a slow slot retry later.
    queue = QueueConfig(
        max_dispatches_per_second=2,
        max_concurrent_dispatches=4,
        max_attempts=8,
        min_backoff=30,
        max_backoff=900,
        dispatch_deadline=900,
    )
    params_model = GdeltParams
    default_base_url = "http://data.gdeltproject.org/gdeltv2"
    schemas = {stream: cols for stream, (_, cols) in STREAMS.items()}
    memory = "1Gi"

    def dedup_params(self, params: Params, now: datetime) -> dict[str, object]:
        out = super().dedup_params(params, now)
        # The backfill planner's hint, read from GDELT's own list (callers are refused it: Params.internal).
        # Whatever it says, the job is the slot's one job, verified against the listing when the hint misses.
        out.pop("expected", None)
        if out.get("slot") is None:
            out["latest_as_of"] = current_slot(now)
        return out

    def plan(self, params: Params, ctx: Context) -> list[Part]:
        assert isinstance(params, GdeltParams)
        listed = self._listing(params, ctx)
        parts = []
        slot = params.slot or max(s for s in (slot_of(url) for _, _, url in listed.values()) if s)
        for index, stream in enumerate(params.streams):
            suffix = STREAMS[stream][0]
            if params.expected and stream in params.expected:
                size, md5 = params.expected[stream]
                filename, hinted = f"{slot}.{suffix}", True
            else:
                found = listed.get(f"{slot}.{suffix}")
                if found is None:
                    raise PermanentError(f"GDELT lists no {stream} file for slot {slot}")
                size, md5, url = found
                filename, hinted = url.rsplit("/", 1)[-1], False
            parts.append(
                Part(
                    key=f"{slot}.{stream}",
                    index=index,
                    total=len(params.streams),
                    stream=stream,
                    partition=f"{slot[:4]}/{slot[4:6]}/{slot[6:8]}",
                    params={"slot": slot, "file": filename, "size": size, "md5": md5, "hinted": hinted},
                )
            )
        return parts

    def backfill(self, start: datetime, end: datetime, params: Params, ctx: Context) -> list[dict[str, object]]:
        """One child per published slot in ``[start, end)``, read from one pass over masterfilelist.txt.

        Each child carries the listed size and md5 of its files, so no child reads the master list
        again. Slots GDELT never published (real gaps exist) are not planned.
        """
        assert isinstance(params, GdeltParams)
        lo, hi = start.astimezone(UTC).strftime("%Y%m%d%H%M%S"), end.astimezone(UTC).strftime("%Y%m%d%H%M%S")
        suffixes = {STREAMS[s][0]: s for s in params.streams}
        slots: dict[str, dict[str, tuple[int, str]]] = {}
        path = ctx.workdir / "masterfilelist.txt"
        ctx.http.download(f"{ctx.base_url}/masterfilelist.txt", path)
        with path.open("r", encoding="utf-8", errors="replace") as lines:
            for size, md5, url in parse_file_list_lines(lines):
                slot = slot_of(url)
                if slot is None or not lo <= slot < hi:
                    continue
                stream = suffixes.get(url.rsplit("/", 1)[-1][15:])
                if stream:
                    slots.setdefault(slot, {})[stream] = (size, md5)
        return [
            {"slot": slot, "streams": list(params.streams), "expected": {k: list(v) for k, v in found.items()}}
            for slot, found in sorted(slots.items())
            if set(found) == set(params.streams)
        ]

    def _listing(self, params: GdeltParams, ctx: Context) -> dict[str, tuple[int, str, str]]:
        """File name -> (size, md5, url), from lastupdate.txt, or masterfilelist.txt for older slots."""
        if params.expected and set(params.streams) <= set(params.expected) and params.slot:
            return {}
        latest = {
            url.rsplit("/", 1)[-1]: (size, md5, url)
            for size, md5, url in parse_file_list(ctx.http.get(f"{ctx.base_url}/lastupdate.txt").text)
        }
        if not latest:
            raise PermanentError("GDELT lastupdate.txt lists no files")
        if params.slot is None or any(name.startswith(params.slot) for name in latest):
            return latest
        newest = max((s for s in (slot_of(url) for _, _, url in latest.values()) if s), default="")
        if params.slot > newest:
            # Not published yet (GDELT is minutes behind the clock): retried, so the slot's one job is not
            # failed for good before its files exist.
            raise TransientError(f"GDELT slot {params.slot} is not published yet (the newest is {newest})")
        return self._from_master_list(params.slot, ctx)

    def _from_master_list(self, slot: str, ctx: Context) -> dict[str, tuple[int, str, str]]:
        """Scan masterfilelist.txt (hundreds of MB upstream) as a stream, stopping past ``slot``."""
        found: dict[str, tuple[int, str, str]] = {}
        path = ctx.workdir / "masterfilelist.txt"
        ctx.http.download(f"{ctx.base_url}/masterfilelist.txt", path)
        with path.open("r", encoding="utf-8", errors="replace") as lines:
            for size, md5, url in parse_file_list_lines(lines):
                this = slot_of(url)
                if this == slot:
                    found[url.rsplit("/", 1)[-1]] = (size, md5, url)
                elif found and this and this > slot:
                    break
        if not found:
            raise PermanentError(f"GDELT slot {slot} is not in masterfilelist.txt (no file was published for it)")
        return found

    def fetch(self, part: Part, ctx: Context) -> Raw:
        p = part.params
        dest = ctx.workdir / p["file"]
        got = ctx.http.download(f"{ctx.base_url}/{p['file']}", dest)
        if p.get("hinted") and (got.size, got.md5) != (p["size"], p["md5"]):
            # A planner's hint is not the authority: GDELT's listing is (it may have re-published the file).
            stream: Stream = part.stream  # type: ignore[assignment]
            listed = self._listing(GdeltParams(slot=p["slot"], streams=(stream,)), ctx).get(p["file"])
            if listed is not None:
                p = {**p, "size": listed[0], "md5": listed[1]}
        if got.size != p["size"]:
            raise PermanentError(f"{p['file']}: size {got.size:,} bytes does not match the listed {p['size']:,}")
        if got.md5 != p["md5"]:
            raise PermanentError(f"{p['file']}: md5 {got.md5} does not match the listed {p['md5']}")
        return Raw(path=dest, size=got.size, name=p["file"], content_type="application/zip")

    def parse(self, stream: IO[bytes], part: Part) -> Iterator[pa.RecordBatch]:
        return parse_tsv(stream, STREAMS[part.stream][1], label=part.key)

    def watermark(self, part: Part, records: int) -> str | None:
        return str(part.params["slot"])


def parse_tsv(stream: IO[bytes], columns: tuple[Column, ...], *, label: str = "file") -> Iterator[pa.RecordBatch]:
    """Record batches from a GDELT tab-separated file, zipped or not, streamed block by block.

    GDELT files have no header and no quoting: every tab separates a field and every newline ends a row.

    Raises:
        PermanentError: a row with the wrong number of fields, a value of the wrong type, bad UTF-8 or
            a corrupt zip; the message names the file and the problem.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    head = stream.read(4)
    stream.seek(0)
    if head == b"PK\x03\x04":
        try:
            archive = zipfile.ZipFile(stream)
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise PermanentError(f"{label}: expected one file in the zip, found {len(members)}")
            inner: IO[bytes] = archive.open(members[0])
        except zipfile.BadZipFile as exc:
            raise PermanentError(f"{label}: corrupt zip: {exc}") from exc
    else:
        inner = stream
    schema = arrow_schema(columns)
    try:
        reader = pacsv.open_csv(
            inner,
            read_options=pacsv.ReadOptions(column_names=schema.names, block_size=BLOCK_SIZE),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False),
            convert_options=pacsv.ConvertOptions(column_types=schema, null_values=[""], strings_can_be_null=True),
        )
        yield from reader
    except pa.ArrowInvalid as exc:
        raise PermanentError(f"{label}: not a valid GDELT file of {len(columns)} columns: {exc}") from exc
    except (zipfile.BadZipFile, EOFError) as exc:
        raise PermanentError(f"{label}: corrupt or truncated zip: {exc}") from exc


def parse_file_list_lines(lines: IO[str]) -> Iterator[tuple[int, str, str]]:
    """Like :func:`parse_file_list`, over a text stream."""
    for line in lines:
        yield from parse_file_list(line)
