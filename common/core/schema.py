"""Declared output schemas (``Column``) as Arrow schemas and BigQuery JSON."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: The BigQuery types a source may declare. pyarrow is imported on first use only: it costs ~80 ms of
#: cold start, and the api and status functions never write Parquet.
TYPES = ("STRING", "INT64", "FLOAT64", "BOOL", "DATE", "TIMESTAMP")


@dataclass(frozen=True)
class Column:
    """One column of a source's output schema, in BigQuery terms."""

    name: str
    type: str  # one of TYPES
    mode: str = "NULLABLE"
    description: str = ""

    def bigquery(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "mode": self.mode, "description": self.description}


def arrow_type(name: str) -> Any:
    """The Arrow type for a declared BigQuery type.

    Raises:
        KeyError: not one of ``TYPES``.
    """
    import pyarrow as pa

    types = {
        "STRING": pa.string(),
        "INT64": pa.int64(),
        "FLOAT64": pa.float64(),
        "BOOL": pa.bool_(),
        "DATE": pa.date32(),
        "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    }
    return types[name]


def arrow_schema(columns: Iterable[Column]) -> Any:
    """The Arrow schema of declared columns (REQUIRED columns are non-nullable).

    Raises:
        KeyError: a column has a type outside ``TYPES``.
    """
    import pyarrow as pa

    return pa.schema([pa.field(c.name, arrow_type(c.type), nullable=c.mode != "REQUIRED") for c in columns])
