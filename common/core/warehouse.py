"""The warehouse port: load rules, table names, load ids, schema checks and hive-style paths (pure)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, Protocol
from urllib.parse import unquote

from common.core.errors import PermanentError
from common.core.schema import TYPES, Column

#: Lineage columns every warehouse table carries after the declared ones: the output a row came from
#: (what replace-by-output deletes), the output's date (the default partition), and when it was loaded.
OUTPUT_COLUMN = "_tributary_output"
DT_COLUMN = "_tributary_dt"
LOADED_COLUMN = "_tributary_loaded_at"
LINEAGE = (
    Column(OUTPUT_COLUMN, "STRING", "REQUIRED", "the normalized object this row was loaded from"),
    Column(DT_COLUMN, "DATE", "NULLABLE", "the output's date (its dt= path segment)"),
    Column(LOADED_COLUMN, "TIMESTAMP", "NULLABLE", "when the row was loaded"),
)

_DATE_PARTITION = re.compile(r"(\d{4})/(\d{2})/(\d{2})")
_DT_SEGMENT = re.compile(r"(?:^|/)dt=(\d{4}-\d{2}-\d{2})(?:/|$)")
_OLD_DT = re.compile(r"/(\d{4})/(\d{2})/(\d{2})/[^/]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class SchemaChangeError(PermanentError):
    """The declared schema changed in a way the table cannot follow (a column renamed, removed or retyped)."""

    def __init__(self, message: str, *, column: str) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class LoadRule:
    """How a stream's outputs become rows, declared by its source.

    ``replace``: a load replaces the rows of the same output (``scope="output"``: a GDELT slot) or the whole
    table (``scope="table"``: a snapshot such as OFAC's lists). ``merge``: rows whose ``keys`` match are
    replaced and the others added (FRED observations, World Bank values), so a revision replaces a row
    and a rerun adds none. ``partition`` is a DATE or TIMESTAMP column (default: the output's date),
    ``cluster`` the clustering columns (default: the merge keys).
    """

    mode: Literal["replace", "merge"] = "replace"
    keys: tuple[str, ...] = ()
    scope: Literal["output", "table"] = "output"
    partition: str = DT_COLUMN
    partition_type: Literal["DAY", "MONTH", "YEAR"] = "DAY"
    cluster: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode == "merge" and not self.keys:
            raise ValueError("a merge rule needs its key columns")

    @property
    def clustering(self) -> tuple[str, ...]:
        return (self.cluster or self.keys)[:4]  # BigQuery clusters on at most four columns


#: The rule of a stream that declares none: each output replaces its own rows.
DEFAULT_RULE = LoadRule()


@dataclass(frozen=True)
class Output:
    """One normalized Parquet output of a job, as the load stage sees it."""

    uri: str
    source: str
    stream: str
    #: The object name from ``normalized/`` on: stable across buckets, the lineage value of its rows.
    name: str
    dt: date | None = None


@dataclass
class LoadResult:
    """What one load did: shown on the job (``load``)."""

    table: str
    output: str
    load_id: str
    rows: int = 0
    bytes: int = 0
    job_id: str = ""  # the warehouse's own job id (BigQuery), when it has one
    reused: bool = False  # the load had already run (a redelivered event)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", None)}


class Warehouse(Protocol):
    """Where outputs become tables: DuckDB embedded, or BigQuery."""

    name: str

    def ensure_table(self, table: str, columns: Sequence[Column], rule: LoadRule) -> None:
        """Create the table from the declared schema, or add the columns it lacks.

        Raises:
            SchemaChangeError: a column was renamed, removed or retyped.
        """
        ...

    def load(self, output: Output, columns: Sequence[Column], rule: LoadRule, load_id: str) -> LoadResult:
        """Load one Parquet output idempotently under ``rule``; a ``load_id`` already done is not loaded again.

        Raises:
            SchemaChangeError: the table cannot take the declared schema.
            TransientError: the warehouse is unavailable for now.
        """
        ...

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run ``sql``; returns the column names and the rows.

        Raises:
            PermanentError: the query is invalid.
        """
        ...


def table_name(source: str, stream: str) -> str:
    """``<source>_<stream>``, a valid table name in BigQuery and DuckDB."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{source}_{stream}")


def load_id(job_id: str, output_name: str) -> str:
    """The load's id, derived from the job and the output: a redelivered event reuses it (BigQuery job id rules)."""
    digest = hashlib.sha256(f"{job_id}\n{output_name}".encode()).hexdigest()[:16]
    return f"tributary_load_{_UNSAFE.sub('_', job_id)[:150]}_{digest}"


def hive_partition(partition: str) -> str:
    """The path segment(s) of a part's partition, hive-style: ``2024/01/15`` → ``dt=2024-01-15``, ``DFF`` →
    ``partition=DFF``, ``A/2022`` → ``partition=A-2022``; empty stays empty."""
    if not partition:
        return ""
    if m := _DATE_PARTITION.fullmatch(partition):
        return f"dt={m[1]}-{m[2]}-{m[3]}"
    return "partition=" + _UNSAFE.sub("_", partition.replace("/", "-"))


def output_date(name: str) -> date | None:
    """The date of an output: its ``dt=`` segment, or the ``YYYY/MM/DD/`` folders of the older layout."""
    if m := _DT_SEGMENT.search(name):
        return date.fromisoformat(m[1])
    if m := _OLD_DT.search(name):
        return date(int(m[1]), int(m[2]), int(m[3]))
    return None


def parse_output(uri: str, source: str) -> Output | None:
    """The normalized Parquet output in ``uri`` (``…/normalized/<source>/<stream>/…/<key>.parquet``), or None."""
    marker = f"normalized/{source}/"
    uri = unquote(uri) if uri.startswith("file:") else uri  # Path.as_uri() writes "dt=" as "dt%3D"
    at = uri.rfind(marker)
    if at < 0 or not uri.endswith(".parquet"):
        return None
    name = uri[at:]
    stream = name[len(marker) :].split("/", 1)[0]
    return Output(uri=uri, source=source, stream=stream, name=name, dt=output_date(name))


def check_columns(table: str, existing: Mapping[str, str], declared: Iterable[Column]) -> list[Column]:
    """The declared columns the table lacks (field additions are allowed).

    ``existing`` maps the table's column names to their declared-type names (``TYPES``).

    Raises:
        SchemaChangeError: a column of the table is gone from the declared schema (renamed or removed), or a
            column's type changed; the message names the column.
    """
    declared = [*declared, *LINEAGE]
    by_name = {c.name: c for c in declared}
    for name, type_ in existing.items():
        column = by_name.get(name)
        if column is None:
            new = [c.name for c in declared if c.name not in existing]
            hint = f" (renamed to {', '.join(new)}?)" if new else ""
            raise SchemaChangeError(
                f"table {table}: column {name!r} is not in the declared schema any more{hint}; "
                "only adding columns is allowed",
                column=name,
            )
        if type_ != column.type:
            raise SchemaChangeError(
                f"table {table}: column {name!r} changed type from {type_} to {column.type}", column=name
            )
    unknown = [c.name for c in declared if c.type not in TYPES]
    if unknown:
        raise SchemaChangeError(f"table {table}: column {unknown[0]!r} has an unknown type", column=unknown[0])
    return [c for c in declared if c.name not in existing]


@dataclass
class LoadReport:
    """Every load of one job (what the job's ``load`` field holds)."""

    status: Literal["loaded", "failed"] = "loaded"
    warehouse: str = ""
    rows: int = 0
    bytes: int = 0
    tables: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    def add(self, result: LoadResult) -> None:
        self.rows += result.rows
        self.bytes += result.bytes
        self.tables.append(result.to_dict())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "warehouse": self.warehouse,
            "rows": self.rows,
            "bytes": self.bytes,
            "tables": self.tables,
        }
        if self.error:
            out["error"] = self.error
        return out


def summarize_loads(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One job's ``load``: failed if any report failed; rows and bytes summed; every table's outcome."""
    failed = [r for r in reports if r.get("status") == "failed"]
    summary: dict[str, Any] = {
        "status": "failed" if failed else "loaded",
        "warehouse": next((r.get("warehouse") for r in reports if r.get("warehouse")), ""),
        "rows": sum(int(r.get("rows", 0)) for r in reports),
        "bytes": sum(int(r.get("bytes", 0)) for r in reports),
        "tables": sorted((t for r in reports for t in r.get("tables", [])), key=lambda t: t.get("output", "")),
    }
    if failed:
        summary["error"] = failed[0].get("error", "")
    return summary
