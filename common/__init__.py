"""Tributary: event-driven data ingestion on Google Cloud (shared library behind every function)."""

import logging as _logging

from common.settings import settings as _settings


def setup_logging() -> None:
    """One log format for every function (level from ``TRIBUTARY_LOG_LEVEL``, default INFO)."""
    level = _settings().log_level.upper()
    _logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs each full URL at INFO, query string (API keys) included.
    _logging.getLogger("httpx").setLevel(_logging.WARNING)
