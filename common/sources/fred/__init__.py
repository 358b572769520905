"""FRED: series observations with their ALFRED vintages, fetched incrementally per series."""

from common.sources.fred.client import MAX_VINTAGES_PER_REQUEST, OBSERVATIONS_LIMIT, fetch_answers, vintage_windows
from common.sources.fred.params import DEFAULT_SERIES, EARLIEST, LATEST, SECRET, FredParams, fred_today
from common.sources.fred.parse import OBSERVATIONS, decode_answer, fred_error, http_error, parse_answers, parse_value
from common.sources.fred.source import Fred

__all__ = [
    "DEFAULT_SERIES",
    "EARLIEST",
    "LATEST",
    "MAX_VINTAGES_PER_REQUEST",
    "OBSERVATIONS",
    "OBSERVATIONS_LIMIT",
    "SECRET",
    "Fred",
    "FredParams",
    "decode_answer",
    "fetch_answers",
    "fred_error",
    "fred_today",
    "http_error",
    "parse_answers",
    "parse_value",
    "vintage_windows",
]
