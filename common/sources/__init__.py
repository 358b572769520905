"""The source registry: an explicit list, no discovery magic. Adding a source = one module + one line here.

Sources that live outside this package (a team's own connector, the benchmarks' no-op source) are
named explicitly in ``TRIBUTARY_EXTRA_SOURCES`` as ``module:Class`` entries separated by commas.

A source's module is imported when that source is first asked for, not when this package is: a
deployed ingest function serves one source per request, and importing all seven modules cost a
cold start about 100 ms (``python -X importtime -c 'import functions.ingest'``; BENCHMARKS.md, P2).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

from common.core.errors import ConfigError
from common.settings import settings

if TYPE_CHECKING:  # pragma: no cover (a type only: each source's module loads the contract it subclasses)
    from common.sources.base import Source

#: name -> "module:Class", in the order the sources are listed (api, demo, deploy).
BUILTIN: dict[str, str] = {
    "gdelt": "common.sources.gdelt:Gdelt",
    "fred": "common.sources.fred:Fred",
    "comtrade": "common.sources.comtrade:Comtrade",
    "reliefweb": "common.sources.reliefweb:ReliefWeb",
    "worldbank": "common.sources.worldbank:WorldBank",
    "ofac": "common.sources.ofac:Ofac",
}


def _load(spec: str) -> Source:
    module, _, cls = spec.partition(":")
    source: Source = getattr(importlib.import_module(module), cls)()
    return source


@cache
def _builtin(name: str) -> Source:
    source = _load(BUILTIN[name])
    if source.name != name:  # a registry typo would otherwise route jobs to the wrong source
        raise ConfigError(f"common.sources.BUILTIN[{name!r}] loads a source named {source.name!r}")
    return source


def _extra() -> tuple[Source, ...]:
    return _extra_from(settings().extra_sources.strip())


@cache
def _extra_from(spec: str) -> tuple[Source, ...]:
    out = []
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        try:
            out.append(_load(entry))
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"TRIBUTARY_EXTRA_SOURCES entry {entry!r} cannot be loaded: {exc}") from exc
    return tuple(out)


def get_source(name: str) -> Source:
    """The source called ``name``, importing only its module.

    Raises:
        KeyError: no such source (the message lists the known ones).
    """
    if name in BUILTIN:
        return _builtin(name)
    for source in _extra():
        if source.name == name:
            return source
    raise KeyError(f"unknown source {name!r}; known sources: {', '.join(source_names())}")


def all_sources() -> tuple[Source, ...]:
    """Every registered source, built-in first (this imports all their modules)."""
    return tuple(_builtin(name) for name in BUILTIN) + _extra()


def source_names() -> list[str]:
    return sorted([*BUILTIN, *(s.name for s in _extra())])
