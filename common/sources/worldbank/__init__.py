"""World Bank Indicators API v2: indicator series per country batch, re-fetched when ``lastupdated`` moves."""

from common.sources.worldbank.client import classify_response, fetch_pages, probe
from common.sources.worldbank.params import DEFAULT_INDICATORS, WorldBankParams, batch_label, batches
from common.sources.worldbank.parse import COLUMNS, api_error, page_records, parse_pages, split_page
from common.sources.worldbank.source import WorldBank

__all__ = [
    "COLUMNS",
    "DEFAULT_INDICATORS",
    "WorldBank",
    "WorldBankParams",
    "api_error",
    "batch_label",
    "batches",
    "classify_response",
    "fetch_pages",
    "page_records",
    "parse_pages",
    "probe",
    "split_page",
]
