"""What the status function recorded about a source: its watermark, per-key cursors and last outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class SourceState:
    """What the status function recorded about the source (``sources/{name}``)."""

    watermark: str | None = None
    last_success_at: datetime | None = None
    last_status: str | None = None
    #: Per-cursor watermarks (see ``Part.cursor``), e.g. the last observation date per series.
    cursors: dict[str, str] = field(default_factory=dict)
