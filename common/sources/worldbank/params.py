"""World Bank params model: indicators, countries in batches, years and the database a job asks for."""

from __future__ import annotations

import hashlib
import re

from pydantic import Field, ValidationInfo, field_validator

from common.sources.base import Params

DEFAULT_INDICATORS = ("NY.GDP.MKTP.CD", "SP.POP.TOTL")
#: Rows per call. 20,000 holds a whole indicator for every country and year (about 17,000 rows) in one
#: page; 32,500 is the largest value reported to work.
DEFAULT_PER_PAGE = 20_000
MAX_PER_PAGE = 32_500
DEFAULT_MAX_PAGES = 50
#: Countries per call: the codes go in the URL path (``BRA;IND;NGA``), so keep it short.
DEFAULT_BATCH = 50
MAX_BATCH = 60
INDICATOR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._]{0,79}$")
COUNTRY_RE = re.compile(r"^[A-Za-z0-9]{2,3}$")
#: In-band error ids worth retrying ("105: Service currently unavailable"); any other id is permanent.
TRANSIENT_ERROR_IDS = {"105"}


class WorldBankParams(Params):
    """Indicators for countries; one part per (indicator, batch of countries)."""

    indicators: tuple[str, ...] = Field(DEFAULT_INDICATORS, min_length=1, description="indicator ids")
    countries: tuple[str, ...] = Field(("all",), min_length=1, description='ISO2/ISO3 or aggregate codes, or "all"')
    batch_size: int = Field(DEFAULT_BATCH, ge=1, le=MAX_BATCH, description="countries per part")
    start_year: int | None = Field(None, ge=1900, le=2100, description="first year (with end_year)")
    end_year: int | None = Field(
        None, ge=1900, le=2100, validate_default=True, description="last year (with start_year)"
    )
    source: int | None = Field(None, ge=1, le=999, description="World Bank database id; default: the API's")
    per_page: int = Field(DEFAULT_PER_PAGE, ge=1, le=MAX_PER_PAGE, description="rows per call")
    max_pages: int = Field(DEFAULT_MAX_PAGES, ge=1, le=1000, description="guard: calls per part")

    @field_validator("indicators")
    @classmethod
    def _indicators(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [i for i in v if not INDICATOR_RE.match(i)]
        if bad:
            raise ValueError(f"must be World Bank indicator ids like 'NY.GDP.MKTP.CD'; not {', '.join(map(repr, bad))}")
        return tuple(dict.fromkeys(v))

    @field_validator("countries")
    @classmethod
    def _countries(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(c.lower() == "all" for c in v):
            if len(v) > 1:
                raise ValueError('"all" cannot be combined with other country codes')
            return ("all",)
        bad = [c for c in v if not COUNTRY_RE.match(c)]
        if bad:
            raise ValueError(f"must be 2-3 letter country or aggregate codes; not {', '.join(map(repr, bad))}")
        return tuple(sorted({c.upper() for c in v}))

    @field_validator("end_year")
    @classmethod
    def _years(cls, v: int | None, info: ValidationInfo) -> int | None:
        if "start_year" not in info.data:  # start_year itself was invalid (and is reported)
            return v
        start = info.data["start_year"]
        if (start is None) != (v is None):
            raise ValueError("start_year and end_year go together")
        if start is not None and v is not None and start > v:
            raise ValueError("must not be before start_year")
        return v


def batches(countries: tuple[str, ...], size: int) -> list[tuple[str, ...]]:
    return [countries[i : i + size] for i in range(0, len(countries), size)]


def batch_label(batch: tuple[str, ...]) -> str:
    """A short, deterministic name for a batch of countries (it names the part and its cursor)."""
    if len(batch) <= 4:
        return "-".join(batch)
    digest = hashlib.sha1(";".join(batch).encode()).hexdigest()[:8]
    return f"{batch[0]}-{batch[-1]}-{len(batch)}c-{digest}"
