"""UN Comtrade: final trade data from the v1 data API, one part per period and reporter batch."""

from common.sources.comtrade.client import classify_response, fetch_answers
from common.sources.comtrade.errors import gateway_error, quota_wait
from common.sources.comtrade.params import DEFAULT_REPORTERS, KEY_HEADER, SECRET, ComtradeParams
from common.sources.comtrade.parse import COLUMNS, check_answer, parse_answers, to_record
from common.sources.comtrade.query import periods_to_fetch, reporter_batches, split_query
from common.sources.comtrade.source import Comtrade

__all__ = [
    "COLUMNS",
    "DEFAULT_REPORTERS",
    "KEY_HEADER",
    "SECRET",
    "Comtrade",
    "ComtradeParams",
    "check_answer",
    "classify_response",
    "fetch_answers",
    "gateway_error",
    "parse_answers",
    "periods_to_fetch",
    "quota_wait",
    "reporter_batches",
    "split_query",
    "to_record",
]
