"""The source registry: an explicit list, no discovery magic. Adding a source = one module + one line here."""

from __future__ import annotations

from common.sources.base import Source
from common.sources.gdelt import Gdelt

SOURCES: tuple[Source, ...] = (Gdelt(),)
_BY_NAME = {s.name: s for s in SOURCES}


def get_source(name: str) -> Source:
    """The source called ``name``.

    Raises:
        KeyError: no such source (the message lists the known ones).
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r}; known sources: {', '.join(sorted(_BY_NAME))}") from None


def source_names() -> list[str]:
    return sorted(_BY_NAME)
