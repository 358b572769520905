"""The context a source plans, fetches and backfills in: built by ingest for a task, by the api to plan a backfill.

Apart from ``runtime.ingest`` so that the api, which needs only this, does not import the ingest runner
(its output store, Pub/Sub publishing, secrets and Arrow schema code) at cold start.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from common.gcp.firestore import source_state
from common.sources.context import Context

if TYPE_CHECKING:  # pragma: no cover
    from common.sources.base import Source

__all__ = ["source_context"]


@contextlib.contextmanager
def source_context(source: Source, *, secrets: dict[str, str] | None = None) -> Iterator[Context]:
    """What ``plan``, ``fetch`` and ``backfill`` get: the shared HTTP client (with the source's rate),
    the base URL, the recorded state (read from Firestore when first used), a scratch folder removed
    afterwards, the time, the secrets."""
    # Imported on first use: the HTTP client's libraries (httpx, limits, tenacity) are cold-start cost for the
    # api and status functions, which never fetch (tests/sources/test_contract.py holds this).
    from common.sources.http import Http

    with Http(rate=source.http_rate, name=source.name) as http, tempfile.TemporaryDirectory(prefix="trib-") as tmp:
        yield Context(
            http=http,
            base_url=source.base_url(),
            workdir=Path(tmp),
            state=lambda: source_state(source.name),
            now=datetime.now(UTC),
            secrets=secrets or {},
        )
