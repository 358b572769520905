"""Tributary: event-driven data ingestion on Google Cloud (shared library behind every function)."""

from common.runtime.logs import bind_request, setup_logging

__all__ = ["bind_request", "setup_logging"]
