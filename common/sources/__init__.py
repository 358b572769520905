"""The source registry: an explicit list, no discovery magic. Adding a source = one module + one line here.

Sources that live outside this package (a team's own connector, the benchmarks' no-op source) are
named explicitly in ``TRIBUTARY_EXTRA_SOURCES`` as ``module:Class`` entries separated by commas.
"""

from __future__ import annotations

import importlib
import os

from common.errors import ConfigError
from common.sources.base import Source
from common.sources.comtrade import Comtrade
from common.sources.fred import Fred
from common.sources.gdelt import Gdelt
from common.sources.ofac import Ofac
from common.sources.reliefweb import ReliefWeb
from common.sources.worldbank import WorldBank

BUILTIN: tuple[Source, ...] = (Gdelt(), Fred(), Comtrade(), ReliefWeb(), WorldBank(), Ofac())


def _extra() -> tuple[Source, ...]:
    spec = os.environ.get("TRIBUTARY_EXTRA_SOURCES", "").strip()
    out = []
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        module, _, cls = entry.partition(":")
        try:
            out.append(getattr(importlib.import_module(module), cls)())
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"TRIBUTARY_EXTRA_SOURCES entry {entry!r} cannot be loaded: {exc}") from exc
    return tuple(out)


SOURCES: tuple[Source, ...] = BUILTIN + _extra()
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
