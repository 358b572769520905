"""The embedded warehouse: the same tables and load rules as BigQuery, in one DuckDB file."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from common.core.errors import PermanentError, TransientError
from common.core.schema import Column
from common.core.warehouse import (
    DT_COLUMN,
    LINEAGE,
    LOADED_COLUMN,
    OUTPUT_COLUMN,
    LoadResult,
    LoadRule,
    Output,
    SchemaChangeError,
    check_columns,
    table_name,
)
from common.gcp.objects import local_copy

#: Declared types as DuckDB types, and back (``information_schema.columns.data_type``).
DUCKDB_TYPES = {
    "STRING": "VARCHAR",
    "INT64": "BIGINT",
    "FLOAT64": "DOUBLE",
    "BOOL": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP WITH TIME ZONE",
}
DECLARED_TYPES = {v: k for k, v in DUCKDB_TYPES.items()}
#: Which loads have run: a redelivered event finds its load id here and loads nothing.
LOADS_TABLE = "_tributary_loads"
#: How long a writer or a reader waits for another process to release the file (DuckDB allows one writer).
LOCK_WAIT = 30.0

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(path: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


def quote(name: str) -> str:
    """A quoted DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A quoted DuckDB string literal (table functions such as ``read_parquet`` take no parameters)."""
    return "'" + value.replace("'", "''") + "'"


class DuckDBWarehouse:
    """Tables in a DuckDB file. Each load is one transaction; the file is opened per call and closed after,
    so ``tributary query`` in another process can read it between loads."""

    name = "duckdb"

    def __init__(self, path: str | Path) -> None:
        self.path = str(Path(path).resolve())

    @contextlib.contextmanager
    def _connect(self, *, read_only: bool = False) -> Iterator[Any]:
        import duckdb  # on first use: the status and api functions never load

        if read_only and not Path(self.path).exists():
            raise PermanentError(f"no warehouse at {self.path} yet: no job has been loaded")
        if not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                con = duckdb.connect(self.path, read_only=read_only)
                break
            except duckdb.IOException as exc:  # another process holds the file
                if time.monotonic() >= deadline:
                    raise TransientError(f"the warehouse file {self.path} is busy: {exc}") from exc
                time.sleep(0.1)
        try:
            yield con
        finally:
            con.close()

    # ---- tables ------------------------------------------------------------------------------
    def _columns(self, con: Any, table: str) -> dict[str, str]:
        rows = con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'main' and table_name = ? order by ordinal_position",
            [table],
        ).fetchall()
        return {name: DECLARED_TYPES.get(type_, type_) for name, type_ in rows}

    def _ensure(self, con: Any, table: str, columns: Sequence[Column]) -> None:
        existing = self._columns(con, table)
        if not existing:
            body = ", ".join(
                f"{quote(c.name)} {DUCKDB_TYPES[c.type]}{' NOT NULL' if c.mode == 'REQUIRED' else ''}"
                for c in (*columns, *LINEAGE)
            )
            con.execute(f"create table if not exists {quote(table)} ({body})")
            return
        for column in check_columns(table, existing, columns):  # field additions; anything else raises
            con.execute(f"alter table {quote(table)} add column {quote(column.name)} {DUCKDB_TYPES[column.type]}")

    def ensure_table(self, table: str, columns: Sequence[Column], rule: LoadRule) -> None:
        """Create ``table`` from the declared columns (plus the lineage columns), or add the ones it lacks.

        Raises:
            SchemaChangeError: a column was renamed, removed or retyped (the message names it).
            TransientError: the file stayed busy.
        """
        with _lock(self.path), self._connect() as con:
            self._ensure(con, table, columns)

    # ---- loads -------------------------------------------------------------------------------
    def load(self, output: Output, columns: Sequence[Column], rule: LoadRule, load_id: str) -> LoadResult:
        """Load one Parquet file under ``rule`` in one transaction; a load id already recorded loads nothing.

        Raises:
            SchemaChangeError: the table cannot take the declared schema, or the file has a column it lacks.
            TransientError: the file stayed busy.
        """
        import duckdb

        table = _table(output)
        result = LoadResult(table=table, output=output.name, load_id=load_id)
        with local_copy(output.uri) as local, _lock(self.path), self._connect() as con:
            result.bytes = local.stat().st_size
            parquet = f"read_parquet({literal(str(local))}, hive_partitioning = false)"
            con.execute(
                f"create table if not exists {LOADS_TABLE} (load_id VARCHAR PRIMARY KEY, table_name VARCHAR, "
                "output VARCHAR, rows BIGINT, bytes BIGINT, loaded_at TIMESTAMP WITH TIME ZONE)"
            )
            done = con.execute(f"select rows from {LOADS_TABLE} where load_id = ?", [load_id]).fetchone()
            if done is not None:
                result.rows, result.reused = int(done[0]), True
                return result
            con.execute("begin transaction")
            try:
                self._ensure(con, table, columns)
                have = set(self._columns(con, table))
                for (name,) in con.execute(f"select column_name from (describe select * from {parquet})").fetchall():
                    if name not in have:
                        raise SchemaChangeError(
                            f"table {table}: the output {output.name} has column {name!r}, which the table lacks",
                            column=name,
                        )
                target = quote(table)
                if rule.mode == "merge":
                    match = " and ".join(f"t.{quote(k)} is not distinct from s.{quote(k)}" for k in rule.keys)
                    con.execute(f"delete from {target} t where exists (select 1 from {parquet} s where {match})")
                elif rule.scope == "table":
                    con.execute(f"delete from {target}")
                else:
                    con.execute(f"delete from {target} where {OUTPUT_COLUMN} = ?", [output.name])
                inserted = con.execute(
                    f"insert into {target} by name select *, ? as {OUTPUT_COLUMN}, "
                    f"cast(? as date) as {DT_COLUMN}, now() as {LOADED_COLUMN} from {parquet}",
                    [output.name, output.dt.isoformat() if output.dt else None],
                ).fetchone()
                result.rows = int(inserted[0]) if inserted else 0
                con.execute(
                    f"insert into {LOADS_TABLE} values (?, ?, ?, ?, ?, now())",
                    [load_id, table, output.name, result.rows, result.bytes],
                )
                con.execute("commit")
            except BaseException as exc:
                con.execute("rollback")
                if isinstance(exc, duckdb.Error):
                    raise PermanentError(f"loading {output.name} into {table} failed: {exc}") from exc
                raise
        return result

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run ``sql`` on a read-only connection.

        Raises:
            PermanentError: the query is invalid (DuckDB's first line), or there is no warehouse yet.
            TransientError: the file stayed busy.
        """
        import duckdb

        with self._connect(read_only=True) as con:
            try:
                cursor = con.execute(sql)
                names = [d[0] for d in cursor.description or []]
                return names, cursor.fetchall() if names else []
            except duckdb.Error as exc:
                raise PermanentError(str(exc).strip().splitlines()[0]) from exc


def _table(output: Output) -> str:
    return table_name(output.source, output.stream)
