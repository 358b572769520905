"""UN Comtrade's params model: what a job asks for (type, frequency, classification, codes, periods)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from common.sources.base import Params

SECRET = "COMTRADE_SUBSCRIPTION_KEY"
KEY_HEADER = "Ocp-Apim-Subscription-Key"
#: Calls a free ("comtrade - v1") key may make per day (see docs/sources/comtrade.md for where this comes from).
DAILY_CALL_QUOTA = 500
#: The most records one data call returns on the free tier; a response this full may be truncated.
RECORD_CAP = 100_000
#: Upper bound for ``max_records_per_call`` (the largest per-call limit UN Comtrade's own client mentions).
MAX_RECORD_CAP = 250_000
#: Calls one part may make while splitting a too-large answer, before it gives up with an error.
MAX_CALLS_PER_PART = 32
STREAM = "trade"

#: Goods (C) and services (S) classifications the data API accepts (clCode).
CLASSIFICATIONS = {
    "C": ("HS", "H0", "H1", "H2", "H3", "H4", "H5", "H6", "S1", "S2", "S3", "S4", "SS", "B4", "B5"),
    "S": ("EB", "EB02", "EB10", "EB10S"),
}
#: Trade flow codes (flowCode) of the Comtrade reference list.
FLOWS = ("M", "X", "RM", "RX", "MIP", "MOP", "XIP", "XOP", "DX", "FM")
#: Default reporters (Comtrade's own codes, not always M49: USA is 842, France 251, India 699).
DEFAULT_REPORTERS = (76, 156, 251, 276, 392, 699, 826, 842)
#: Rough fan-out of an unrestricted ("all") dimension, to size reporter batches before the first call.
ALL_ESTIMATE = {"partnerCode": 250, "flowCode": 10, "partner2Code": 250, "motCode": 18, "customsCode": 20}
AGGREGATE_CMD_ESTIMATE = {"AG1": 25, "AG2": 100, "AG4": 1_300, "AG6": 5_700, "ALL": 7_000}

CMD_RE = re.compile(r"^[A-Z0-9]{1,12}$")
CUSTOMS_RE = re.compile(r"^C\d{2}$")
ANNUAL_RE = re.compile(r"^(\d{4})$")
MONTHLY_RE = re.compile(r"^(\d{4})-?(0[1-9]|1[0-2])$")
REPLENISH_RE = re.compile(r"replenished in (?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})")


def _codes(v: Any) -> Any:
    """Accept "156,842" as well as [156, 842]."""
    return [x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v


class ComtradeParams(Params):
    """What to ingest. Without ``start``, the job is incremental: the periods after each batch's cursor."""

    type_code: Literal["C", "S"] = Field("C", description="C goods, S services")
    freq: Literal["A", "M"] = Field("A", description="A annual, M monthly")
    classification: str = Field(
        "HS", validate_default=True, description="clCode: HS, H0-H6, S1-S4, SS, B4, B5 (goods); EB... (services)"
    )
    reporters: tuple[int, ...] = Field(DEFAULT_REPORTERS, min_length=1, description="reporter codes")
    partners: tuple[int, ...] | None = Field((0,), description="partner codes (0 World); null for all partners")
    partner2: tuple[int, ...] | None = Field((0,), description="second partner codes; null for all")
    cmd_codes: tuple[str, ...] = Field(("TOTAL",), min_length=1, description="commodity codes, TOTAL, AG2...")
    flows: tuple[str, ...] | None = Field(("M", "X"), description=f"flow codes ({', '.join(FLOWS)}); null for all")
    mot_codes: tuple[int, ...] | None = Field((0,), description="mode of transport codes (0 all modes); null for all")
    customs_codes: tuple[str, ...] | None = Field(("C00",), description="customs procedure codes; null for all")
    start: str | None = Field(None, description="first period: YYYY (annual) or YYYYMM (monthly); default: incremental")
    end: str | None = Field(None, description="last period (inclusive); default: start")
    reporters_per_call: int = Field(10, ge=1, le=50, description="most reporters in one call")
    max_records_per_call: int = Field(
        RECORD_CAP, ge=1, le=MAX_RECORD_CAP, description="the key's per-call record cap (maxRecords)"
    )
    max_calls: int = Field(100, ge=1, le=DAILY_CALL_QUOTA, description="most parts (calls) one job may plan")
    revision_periods: int = Field(1, ge=1, le=24, description="incremental: ingested periods fetched again")
    initial_periods: int = Field(2, ge=1, le=60, description="incremental: periods fetched when there is no cursor")

    @field_validator("classification")
    @classmethod
    def _classification(cls, v: str, info: ValidationInfo) -> str:
        allowed = CLASSIFICATIONS[info.data.get("type_code", "C")]
        if v not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)} for type_code {info.data.get('type_code', 'C')}")
        return v

    @field_validator("freq")
    @classmethod
    def _freq(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("type_code") == "S" and v != "A":
            raise ValueError("services (type_code S) are published annually only: use A")
        return v

    @field_validator("reporters", "partners", "partner2", "mot_codes", mode="before")
    @classmethod
    def _split_ints(cls, v: Any) -> Any:
        return _codes(v)

    @field_validator("cmd_codes", "flows", "customs_codes", mode="before")
    @classmethod
    def _split_strs(cls, v: Any) -> Any:
        v = _codes(v)
        return [x.upper() if isinstance(x, str) else x for x in v] if isinstance(v, list | tuple) else v

    @field_validator("reporters")
    @classmethod
    def _reporters(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        bad = [c for c in v if not 1 <= c <= 999]
        if bad:
            raise ValueError(f"reporter codes are 1-999 (0 is World, a partner only); got {bad}")
        return tuple(sorted(set(v)))

    @field_validator("partners", "partner2", "mot_codes")
    @classmethod
    def _other_codes(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is None:
            return None
        if not v:
            raise ValueError("give at least one code, or null for all")
        bad = [c for c in v if not 0 <= c <= 9999]
        if bad:
            raise ValueError(f"codes are 0-9999; got {bad}")
        return tuple(sorted(set(v)))

    @field_validator("cmd_codes")
    @classmethod
    def _cmds(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [c for c in v if not CMD_RE.match(c)]
        if bad:
            raise ValueError(f"commodity codes are letters and digits (TOTAL, AG2, 0201, ...); got {bad}")
        return tuple(sorted(set(v)))

    @field_validator("flows")
    @classmethod
    def _flows(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return None
        bad = [c for c in v if c not in FLOWS]
        if bad or not v:
            # The API answers unknown codes with an empty result, not an error: refuse them here.
            raise ValueError(f"flow codes are {', '.join(FLOWS)}; got {bad or 'none'}")
        return tuple(sorted(set(v)))

    @field_validator("customs_codes")
    @classmethod
    def _customs(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return None
        bad = [c for c in v if not CUSTOMS_RE.match(c)]
        if bad or not v:
            raise ValueError(f"customs codes look like C00; got {bad or 'none'}")
        return tuple(sorted(set(v)))

    @field_validator("start", "end", mode="before")
    @classmethod
    def _period(cls, v: Any, info: ValidationInfo) -> Any:
        if v is None:
            return None
        text = str(v).strip()
        freq = info.data.get("freq", "A")
        # A wrongly formatted period is answered with an empty result, not an error: refuse it here.
        m = (ANNUAL_RE if freq == "A" else MONTHLY_RE).match(text)
        if not m or not 1962 <= int(m.group(1)) <= 2100:
            shape = "YYYY" if freq == "A" else "YYYYMM"
            raise ValueError(f"must be a period {shape} (freq {freq}) from 1962 on; got {text!r}")
        return "".join(m.groups())

    @field_validator("end")
    @classmethod
    def _end(cls, v: str | None, info: ValidationInfo) -> str | None:
        start = info.data.get("start")
        if v is not None and start is None:
            raise ValueError("end needs a start")
        if v is not None and start is not None and v < start:
            raise ValueError(f"end {v} is before start {start}")
        return v
