"""A query over the local stack's staging bucket, run by DuckDB as Athena would run it.

DuckDB cannot read moto's S3 here (its httpfs extension is a download away), so the objects a
query reads are first mirrored into `<root>/.sluice/run/query-cache/<bucket>/` (cleared with the
stack's other data by the next `sluice up`): only the prefixes of the tables it names, and of
those only the `dt` partitions its WHERE can need (translate.py); an object already there with
the same ETag is not fetched again. A query that says nothing of `dt` reads every partition: at
most the staging retention's worth.

Each table is then a view in a schema named like the Glue database (`sluice_local`), over
`read_json` of its objects: the Glue columns with their types, the partitions from the key
(`dt`, `hour`, `error_output_type`), and `"$path"`, the object's `s3://` address. A table with
no objects is an empty view with the same columns.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import duckdb

from infrastructure.local.stack.stack_file import STATE_DIR
from infrastructure.query import results
from infrastructure.query.results import Result
from infrastructure.query.tables import QueryTable, all_tables, duckdb_type
from infrastructure.query.translate import PARTITION, PATH, Conditions, translate

LOCAL_DATABASE: Final = "sluice_local"
"""Terraform's name for the Glue database (`glue_database`: the prefix with `_` for `-`) of the
local stack's prefix, `sluice-local`."""
CACHE: Final = Path(STATE_DIR) / "run" / "query-cache"
INDEX: Final = ".etags.json"
FETCH_THREADS: Final = 8
_OBJECT: Final = "__sluice_object"
"""The column read_json names each line's file in: not a name a JSON key is likely to have."""


class LocalQueryError(RuntimeError):
    """The query could not run locally; the message is DuckDB's (or S3's) reason."""


class Source(Protocol):
    """Where a table's objects are read from: local files named by their keys under
    `directory`, which stand for the objects of `bucket`."""

    bucket: str
    directory: Path

    def sync(self, table: QueryTable, keep: Callable[[str], bool]) -> list[Path]:
        """The files of the table's objects in the `dt` partitions `keep` admits."""
        ...


def mirror_of(s3: Any, bucket: str, root: Path, say: Callable[[str], None]) -> Mirror:
    """The local stack's staging bucket, mirrored under the project root (see the module)."""
    return Mirror(s3, bucket, root / CACHE, say)


def run_local(
    source: Source,
    sql: str,
    values: Sequence[str],
    *,
    tables: dict[str, QueryTable] | None = None,
) -> Result:
    """Run Athena's `sql` (with `values` for its `?`) over the source's objects, with DuckDB."""
    tables = all_tables() if tables is None else tables
    translation = translate(
        sql,
        values=values,
        database=LOCAL_DATABASE,
        tables={name: table.column_names for name, table in tables.items()},
    )
    connection = connect()
    try:
        connection.execute(f"CREATE SCHEMA {_quoted(LOCAL_DATABASE)}")
        for name, alternatives in translation.reads.items():
            table = tables[name]
            files = source.sync(table, partition_filter(connection, alternatives))
            connection.execute(view_sql(table, files, source.bucket, source.directory))
        connection.execute(f"USE {_quoted(LOCAL_DATABASE)}")
        cursor = connection.execute(translation.sql)
        description = cursor.description or []
        rows = cursor.fetchall()
    except duckdb.Error as err:
        # Name objects as the bucket does, not by their local copies.
        local = f"{source.directory.as_posix()}/"
        reason = _first_line(err).replace(local, f"s3://{source.bucket}/")
        raise LocalQueryError(f"DuckDB: {reason}") from err
    finally:
        connection.close()
    return Result(
        columns=tuple(d[0] for d in description),
        types=tuple(results.athena_type_of(str(d[1])) for d in description),
        rows=[tuple(results.from_duckdb(v) for v in row) for row in rows],
    )


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that downloads nothing (the json and icu extensions the queries use
    are built in) and computes as Athena does: in UTC (current_date, timestamps), and `/` of
    two integers an integer (Trino's; DuckDB's own gives a double)."""
    connection = duckdb.connect(config={"autoinstall_known_extensions": False})
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute("SET integer_division = true")
    return connection


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:3]) if lines else type(err).__name__


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --- Which partitions ---------------------------------------------------------------------------


def partition_filter(
    connection: duckdb.DuckDBPyConnection, alternatives: tuple[Conditions, ...] | None
) -> Callable[[str], bool]:
    """Whether a `dt` partition can hold rows the query reads. The conditions' values are
    evaluated by DuckDB (`current_date - INTERVAL '1' DAY` and the like); one that does not give
    a string is left out, which only widens what is read."""
    if alternatives is None:
        return lambda _dt: True
    evaluated: list[list[tuple[str, tuple[str, ...]]]] = []
    for conditions in alternatives:
        checks = []
        for condition in conditions:
            try:
                row = connection.execute("SELECT " + ", ".join(condition.values)).fetchone()
            except duckdb.Error:
                continue
            if row is not None and all(isinstance(v, str) for v in row):
                checks.append((condition.operator, tuple(str(v) for v in row)))
        if not checks:
            return lambda _dt: True
        evaluated.append(checks)

    def keep(dt: str) -> bool:
        return any(all(_holds(dt, op, values) for op, values in checks) for checks in evaluated)

    return keep


def _holds(dt: str, operator: str, values: tuple[str, ...]) -> bool:  # noqa: PLR0911  # one return per operator
    if operator == "=":
        return dt == values[0]
    if operator == ">=":
        return dt >= values[0]
    if operator == ">":
        return dt > values[0]
    if operator == "<=":
        return dt <= values[0]
    if operator == "<":
        return dt < values[0]
    if operator == "between":
        return values[0] <= dt <= values[1]
    return dt in values  # in


# --- The mirror ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Object:
    key: str
    etag: str
    size: int


class Folder:
    """Objects already on disk, as `aws s3 sync` leaves a bucket: `<directory>/<key>`."""

    def __init__(self, directory: Path, bucket: str) -> None:
        self.directory = directory
        self.bucket = bucket

    def sync(self, table: QueryTable, keep: Callable[[str], bool]) -> list[Path]:
        depth = table.partitions.index(PARTITION)
        base = self.directory / table.location
        pattern = "/".join(["*"] * depth + [f"{PARTITION}=*"])
        found: list[Path] = []
        for partition in sorted(base.glob(pattern)) if base.is_dir() else []:
            if partition.is_dir() and keep(partition.name.partition("=")[2]):
                found += sorted(p for p in partition.rglob("*") if p.is_file())
        return found


class Mirror:
    """The staging bucket's objects a query reads, as local files (see the module)."""

    def __init__(self, s3: Any, bucket: str, cache: Path, say: Callable[[str], None]) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.directory = cache / bucket
        self._say = say

    def sync(self, table: QueryTable, keep: Callable[[str], bool]) -> list[Path]:
        """The local copies of the table's objects in the partitions `keep` admits, fetching
        those not already there (and removing copies of objects gone from the bucket)."""
        depth = table.partitions.index(PARTITION)
        objects: list[_Object] = []
        for prefix, dt in self._partitions(table.location, depth):
            if keep(dt):
                objects += self._list(prefix)
                self._forget_removed(prefix, {o.key for o in objects})
        index = self._read_index()
        wanted = [
            o for o in objects if index.get(o.key) != o.etag or not self._path(o.key).is_file()
        ]
        if wanted:
            size = sum(o.size for o in wanted)
            self._say(
                f"fetching {len(wanted)} object(s), {size / 1024:,.0f} KiB, of table {table.name} "
                f"from s3://{self.bucket}/{table.location} into {self.directory}"
            )
            with ThreadPoolExecutor(FETCH_THREADS) as pool:
                for done in pool.map(self._fetch, wanted):
                    index[done.key] = done.etag
            self._write_index(index)
        return [self._path(o.key) for o in objects]

    def _partitions(self, prefix: str, depth: int) -> Iterator[tuple[str, str]]:
        """(prefix, dt) of each `dt=` partition under `prefix`, `depth` segments below it."""
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                below = common["Prefix"]
                segment = below[len(prefix) :].rstrip("/")
                if depth > 0:
                    yield from self._partitions(below, depth - 1)
                elif segment.startswith(f"{PARTITION}="):
                    yield below, segment.partition("=")[2]

    def _list(self, prefix: str) -> list[_Object]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        found = []
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"]
                if key.endswith("/"):
                    continue  # a folder marker, not data
                if key.startswith("/") or ".." in key.split("/"):
                    raise LocalQueryError(f"s3://{self.bucket}/{key}: a key with no local path")
                found.append(_Object(key, item.get("ETag", "").strip('"'), item.get("Size", 0)))
        return found

    def _forget_removed(self, prefix: str, keys: set[str]) -> None:
        folder = self._path(prefix)
        if not folder.is_dir():
            return
        for path in folder.rglob("*"):
            if path.is_file() and path.relative_to(self.directory).as_posix() not in keys:
                path.unlink()

    def _fetch(self, item: _Object) -> _Object:
        path = self._path(item.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = self._s3.get_object(Bucket=self.bucket, Key=item.key)["Body"]
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".fetch-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: body.read(1 << 20), b""):
                    out.write(chunk)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return item

    def _path(self, key: str) -> Path:
        return self.directory / key

    def _read_index(self) -> dict[str, str]:
        try:
            index: dict[str, str] = json.loads((self.directory / INDEX).read_text())
        except (OSError, ValueError):
            return {}
        return index

    def _write_index(self, index: dict[str, str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".index-")
        with os.fdopen(fd, "w") as out:
            json.dump(index, out)
        os.replace(temporary, self.directory / INDEX)


# --- The views ----------------------------------------------------------------------------------


def view_sql(table: QueryTable, files: Sequence[Path], bucket: str, directory: Path) -> str:
    """`CREATE VIEW` of the table over its local files (see the module)."""
    name = f"{_quoted(LOCAL_DATABASE)}.{_quoted(table.name)}"
    types = [duckdb_type(c.glue_type, where=f"{table.name}.{c.name}") for c in table.columns]
    if not files:
        empty = [
            f"CAST(NULL AS {t}) AS {_quoted(c.name)}"
            for c, t in zip(table.columns, types, strict=True)
        ]
        empty += [f"CAST(NULL AS VARCHAR) AS {_quoted(p)}" for p in (*table.partitions, PATH)]
        return f"CREATE VIEW {name} AS SELECT {', '.join(empty)} WHERE false"
    local = f"{directory.as_posix()}/{table.location}"
    relative = f"substr({_OBJECT}, {len(local) + 1})"
    selected = [f"{_quoted(c.key)} AS {_quoted(c.name)}" for c in table.columns]
    selected += [
        f"regexp_replace(split_part({relative}, '/', {i + 1}), {_string('^' + p + '=')}, '') "
        f"AS {_quoted(p)}"
        for i, p in enumerate(table.partitions)
    ]
    selected.append(
        f"{_string(f's3://{bucket}/{table.location}')} || {relative} AS {_quoted(PATH)}"
    )
    columns = ", ".join(
        f"{_string(c.key)}: {_string(t)}" for c, t in zip(table.columns, types, strict=True)
    )
    paths = ", ".join(_string(p.as_posix()) for p in files)
    return (
        f"CREATE VIEW {name} AS SELECT {', '.join(selected)} FROM read_json([{paths}], "  # noqa: S608  # names and paths quoted by _quoted and _string; no user input
        f"format = 'newline_delimited', compression = 'gzip', columns = {{{columns}}}, "
        f"filename = {_string(_OBJECT)}, hive_partitioning = false, "
        f"ignore_errors = {str(table.skip_malformed).lower()})"
    )
