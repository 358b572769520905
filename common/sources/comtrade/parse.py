"""UN Comtrade's answers read: the data API's record schema, the answer check and the pure parse."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import orjson

from common.core.errors import PermanentError, TransientError
from common.sources.base import Column, Record
from common.sources.comtrade.errors import gateway_error

_S, _I, _F, _B = "STRING", "INT64", "FLOAT64", "BOOL"


def _col(spec: str, description: str = "") -> Column:
    name, type_, *mode = spec.split(":")
    return Column(name, type_, mode[0] if mode else "NULLABLE", description)


#: The data API's record, field for field (names exactly as the API returns them, e.g. ``cifvalue``).
COLUMNS: tuple[Column, ...] = (
    _col(f"typeCode:{_S}:REQUIRED", "C goods, S services"),
    _col(f"freqCode:{_S}:REQUIRED", "A annual, M monthly"),
    _col(f"refPeriodId:{_I}", "first day of the period, YYYYMMDD"),
    _col(f"refYear:{_I}"),
    _col(f"refMonth:{_I}", "1-12; 52 for annual data"),
    _col(f"period:{_S}:REQUIRED", "YYYY (annual) or YYYYMM (monthly)"),
    _col(f"reporterCode:{_I}:REQUIRED", "Comtrade reporter code"),
    _col(f"reporterISO:{_S}"),
    _col(f"reporterDesc:{_S}"),
    _col(f"flowCode:{_S}:REQUIRED", "M import, X export, RM, RX, ..."),
    _col(f"flowDesc:{_S}"),
    _col(f"partnerCode:{_I}:REQUIRED", "0 is World"),
    _col(f"partnerISO:{_S}"),
    _col(f"partnerDesc:{_S}"),
    _col(f"partner2Code:{_I}"),
    _col(f"partner2ISO:{_S}"),
    _col(f"partner2Desc:{_S}"),
    _col(f"classificationCode:{_S}", "the reported classification, e.g. H3"),
    _col(f"classificationSearchCode:{_S}", "the requested classification, e.g. HS"),
    _col(f"isOriginalClassification:{_B}"),
    _col(f"cmdCode:{_S}:REQUIRED", "commodity code; a string (leading zeros matter)"),
    _col(f"cmdDesc:{_S}"),
    _col(f"aggrLevel:{_I}"),
    _col(f"isLeaf:{_B}"),
    _col(f"customsCode:{_S}"),
    _col(f"customsDesc:{_S}"),
    _col(f"mosCode:{_S}", "mode of supply (services)"),
    _col(f"motCode:{_I}", "mode of transport; 0 is all"),
    _col(f"motDesc:{_S}"),
    _col(f"qtyUnitCode:{_I}", "-1 is N/A (an upstream code, kept as is)"),
    _col(f"qtyUnitAbbr:{_S}"),
    _col(f"qty:{_F}"),
    _col(f"isQtyEstimated:{_B}"),
    _col(f"altQtyUnitCode:{_I}"),
    _col(f"altQtyUnitAbbr:{_S}"),
    _col(f"altQty:{_F}"),
    _col(f"isAltQtyEstimated:{_B}"),
    _col(f"netWgt:{_F}", "kg"),
    _col(f"isNetWgtEstimated:{_B}"),
    _col(f"grossWgt:{_F}", "kg"),
    _col(f"isGrossWgtEstimated:{_B}"),
    _col(f"cifvalue:{_F}", "US$"),
    _col(f"fobvalue:{_F}", "US$"),
    _col(f"primaryValue:{_F}", "US$, from CIF (imports) or FOB (exports)"),
    _col(f"legacyEstimationFlag:{_I}"),
    _col(f"isReported:{_B}"),
    _col(f"isAggregate:{_B}"),
)
#: Other spellings of a column seen in Comtrade's own reference (TradeDataItems.json) but not in data answers.
ALIASES = {
    "cifvalue": ("cifValue",),
    "fobvalue": ("fobValue",),
    "isNetWgtEstimated": ("isnetWgtEstimated",),
    "isGrossWgtEstimated": ("isgrossWgtEstimated",),
}


def check_answer(body: bytes, *, label: str = "answer") -> dict[str, Any]:
    """The decoded answer of ``data/v1/get``, verified: ``{"elapsedTime", "count", "data": [...], "error"}``.

    Raises:
        PermanentError: not JSON; an error body (API gateway or ``error`` with 200); a legacy-API or
            bulk-listing payload; or a ``count`` that disagrees with ``data``.
        TransientError: an ``error`` string that says the API timed out or was busy.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PermanentError(f"{label}: not JSON ({exc}): {body[:120]!r}") from exc
    if not isinstance(doc, dict):
        raise PermanentError(f"{label}: expected a JSON object, got {type(doc).__name__}")
    if "statusCode" in doc and "message" in doc:
        status, text = doc["statusCode"], orjson.dumps(doc).decode()
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        if isinstance(status, int) and not isinstance(status, bool):
            raise gateway_error(status, text, label=label)
        raise PermanentError(f"{label}: upstream answered {status} from comtradeapi: {text}")
    if "dataset" in doc or "validation" in doc:
        raise PermanentError(
            f"{label}: this is a legacy Comtrade API payload ({{validation, dataset}}, comtrade.un.org/api/get), "
            "retired in 2023; this source reads the v1 data API (comtradeapi.un.org/data/v1/get) only"
        )
    if "data" not in doc:
        raise PermanentError(
            f"{label}: not a UN Comtrade data answer (expected elapsedTime, count, data, error; "
            f"found {', '.join(sorted(doc)) or 'no keys'})"
        )
    error = doc.get("error")
    if error:
        text = str(error)
        if any(w in text.lower() for w in ("timeout", "timed out", "try again", "busy")):
            raise TransientError(f"{label}: UN Comtrade answered an error: {text}")
        raise PermanentError(f"{label}: UN Comtrade answered an error: {text}")
    data = doc["data"]
    if data is None:
        data = doc["data"] = []
    if not isinstance(data, list):
        raise PermanentError(f"{label}: data is a {type(data).__name__}, expected a list of records")
    count = doc.get("count")
    if isinstance(count, int) and count < len(data):
        raise PermanentError(f"{label}: count says {count} records but data holds {len(data)}")
    if data and isinstance(data[0], dict) and "fileUrl" in data[0]:
        raise PermanentError(f"{label}: this is a bulk-file listing (bulk/v1/get), not trade data (data/v1/get)")
    return doc


# ------------------------------------------------------------------------------------------ parsing


def _value(raw: Any, type_: str, name: str, where: str) -> Any:
    """One value as its column type; None and "" are missing (never 0)."""
    if raw is None or raw == "":
        return None
    try:
        if type_ == _S:
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise TypeError
            return raw if isinstance(raw, str) else str(raw)
        if type_ == _I:
            if isinstance(raw, bool):
                raise TypeError
            if isinstance(raw, float):
                if not raw.is_integer():
                    raise ValueError
                return int(raw)
            return int(raw)
        if type_ == _F:
            if isinstance(raw, bool):
                raise TypeError
            return float(raw)
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        raise TypeError
    except (TypeError, ValueError):
        raise PermanentError(f"{where}: {name} is {raw!r}, not a valid {type_}") from None


def to_record(item: Any, where: str) -> Record:
    """One API record as a row of :data:`COLUMNS`. Unknown fields are ignored (the API adds fields at times).

    Raises:
        PermanentError: a required field is missing or a value has the wrong type.
    """
    if not isinstance(item, dict):
        raise PermanentError(f"{where}: expected an object, got {type(item).__name__}")
    row = {}
    for col in COLUMNS:
        raw = item.get(col.name)
        if raw is None:
            raw = next((item[a] for a in ALIASES.get(col.name, ()) if item.get(a) is not None), None)
        value = _value(raw, col.type, col.name, where)
        if value is None and col.mode == "REQUIRED":
            raise PermanentError(f"{where}: {col.name} is missing")
        row[col.name] = value
    return row


def parse_answers(stream: IO[bytes], *, label: str = "answer") -> Iterator[Record]:
    """Records from the raw file of a part: NDJSON of ``data/v1/get`` answers (what ``fetch`` writes, read
    one line at a time), or a single answer as the API sends it (compact or pretty-printed).

    Raises:
        PermanentError: an empty file; any answer fails :func:`check_answer`, says more records exist
            than it holds (truncated), or has a record that fails :func:`to_record`.
    """
    first = stream.readline()
    while first and not first.strip():
        first = stream.readline()
    if not first:
        raise PermanentError(f"{label}: empty file, expected UN Comtrade data answers")
    try:
        orjson.loads(first)
        answers: Iterator[bytes] = _lines(first, stream)
        multi = True
    except orjson.JSONDecodeError:
        answers = iter([first + stream.read()])  # one pretty-printed answer
        multi = False
    for n, body in enumerate(answers, 1):
        where = f"{label} line {n}" if multi else label
        doc = check_answer(body, label=where)
        count, data = doc.get("count"), doc["data"]
        if isinstance(count, int) and count > len(data):
            raise PermanentError(f"{where}: count says {count} records but data holds {len(data)} (truncated)")
        for i, item in enumerate(data, 1):
            yield to_record(item, f"{where} record {i}")


def _lines(first: bytes, stream: IO[bytes]) -> Iterator[bytes]:
    yield first
    for line in stream:
        if line.strip():
            yield line
