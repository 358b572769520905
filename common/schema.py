"""Declared output schemas (``Column``) as Arrow schemas and BigQuery JSON."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:  # pragma: no cover - the sources package imports this module
    from common.sources.base import Column

ARROW_TYPES = {
    "STRING": pa.string(),
    "INT64": pa.int64(),
    "FLOAT64": pa.float64(),
    "BOOL": pa.bool_(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
}


def arrow_schema(columns: Iterable[Column]) -> pa.Schema:
    """The Arrow schema of declared columns (REQUIRED columns are non-nullable).

    Raises:
        KeyError: a column has a type outside ``ARROW_TYPES``.
    """
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.type], nullable=c.mode != "REQUIRED") for c in columns])
