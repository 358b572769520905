"""What a source's ``plan``, ``fetch`` and ``backfill`` get to work with (re-exported by ``sources.base``).

Apart from the contract in ``base`` so that the runner that builds it (``common.runtime.context``) does not
import the contract's models: the api builds one only to plan a backfill, after a source module (and so
``base``) is loaded, and its cold start never needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from common.core.source_state import SourceState

if TYPE_CHECKING:  # pragma: no cover
    from common.sources.http import Http

__all__ = ["Context"]


class Context:
    """What ``plan`` and ``fetch`` may use: the shared HTTP client, secrets, state, a scratch dir, the time.

    ``state`` may be given as a function that reads it: it is then read on first use only, so a task that
    never looks at it (a fan-out part, a source without cursors) costs Firestore nothing.
    """

    def __init__(
        self,
        *,
        http: Http,
        base_url: str,
        workdir: Path,
        state: SourceState | Callable[[], SourceState],
        now: datetime,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        self.http, self.base_url, self.workdir, self.now = http, base_url, workdir, now
        self.secrets: Mapping[str, str] = secrets if secrets is not None else {}
        self._state = state

    @property
    def state(self) -> SourceState:
        """What the status function recorded about the source (read once, when first asked for)."""
        if not isinstance(self._state, SourceState):
            self._state = self._state()
        return self._state
