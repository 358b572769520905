"""Tributary: event-driven data ingestion on Google Cloud (shared library behind every function)."""

import os

# pydantic looks for plugins when it builds its first model: a scan of every installed distribution's
# entry points, 20-30 ms of CPU in each function's cold start with the development environment's 154
# distributions (fewer in a deployed function), for plugins Tributary never uses. Set before any model is
# built (the settings are the first); an explicit value wins, and PYDANTIC_DISABLE_PLUGINS= (empty) turns
# the scan back on. BENCHMARKS.md, P2.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from common.runtime.logs import bind_request, setup_logging  # after the setting above

__all__ = ["bind_request", "setup_logging"]
