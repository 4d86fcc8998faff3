"""Athena's SQL (Trino's dialect) as DuckDB runs it, with sqlglot, and what it reads of each table.

sqlglot translates functions and syntax (`date_format` -> `strftime`, `from_unixtime` ->
`to_timestamp`, …). What it cannot know is done here: `?` placeholders become the string
literals Athena's ExecutionParameters would be, the Glue tables are qualified with the database
(a schema of DuckDB views, see infrastructure/query/local.py), and `SELECT *` over a table is
spelt out so that the view's `"$path"` column stays hidden as Athena's pseudo-column is.

For each table the query reads, the translation also says which `dt` partitions it can need:
the conditions on `dt` the WHERE of a single-table SELECT imposes (`dt >= '…'`, `dt = …`,
`BETWEEN`, `IN`, against anything constant). Only those partitions are fetched from S3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import sqlglot
from sqlglot import TokenType, exp
from sqlglot.dialects.athena import Athena
from sqlglot.errors import ParseError, SqlglotError

from infrastructure.query.queries import literal

PARTITION: Final = "dt"
"""The partition every table has (buffers, errors and the payload tables), by date."""
PATH: Final = "$path"

_FLIPPED: Final = {"=": "=", ">=": "<=", ">": "<", "<=": ">=", "<": ">"}
_OPERATORS: Final[dict[type[exp.Expr], str]] = {
    exp.EQ: "=",
    exp.GTE: ">=",
    exp.GT: ">",
    exp.LTE: "<=",
    exp.LT: "<",
}


class TranslateError(ValueError):
    """SQL that cannot run locally as given; says where and why."""


@dataclass(frozen=True, slots=True)
class Condition:
    operator: str
    """`=`, `>=`, `>`, `<=`, `<` or `in`: `dt <operator> values`."""
    values: tuple[str, ...]
    """DuckDB SQL of constant expressions (one; several for `in`)."""


Conditions = tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Translation:
    sql: str
    """The query in DuckDB's dialect."""
    reads: dict[str, tuple[Conditions, ...] | None]
    """Per table read: the partitions it needs, as alternatives (a partition is needed when all
    conditions of any one hold), or None: every partition."""


def bind_placeholders(sql: str, values: Sequence[str]) -> str:
    """`sql` with its `?` placeholders replaced, in order, by `values` as string literals."""
    try:
        tokens = Athena().tokenize(sql)
    except SqlglotError as err:
        raise TranslateError(f"cannot read the SQL: {_first_error(err)}") from err
    marks = [t for t in tokens if t.token_type is TokenType.PLACEHOLDER]
    if len(marks) != len(values):
        raise TranslateError(
            f"the SQL has {len(marks)} `?` placeholder(s) but {len(values)} value(s) are given"
        )
    for token, value in reversed(list(zip(marks, values, strict=True))):
        sql = sql[: token.start] + literal(value) + sql[token.end + 1 :]
    return sql


def translate(
    sql: str,
    *,
    values: Sequence[str],
    database: str,
    tables: Mapping[str, Sequence[str]],
) -> Translation:
    """Athena's `sql` (one query; `values` for its `?`) in DuckDB's dialect. `tables`: each Glue
    table of `database` and the columns `SELECT *` gives of it."""
    bound = bind_placeholders(sql, values)
    try:
        statements = [s for s in sqlglot.parse(bound, read="athena") if s is not None]
    except SqlglotError as err:
        raise TranslateError(f"cannot read the SQL: {_first_error(err)}") from err
    if len(statements) != 1:
        raise TranslateError(f"give one query, not {len(statements)} statements")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise TranslateError(
            f"only queries (SELECT, WITH …) run locally, not {tree.key.upper()}; "
            "run it on Athena with --env"
        )
    ours = _our_tables(tree, database, tables)
    _expand_stars(tree, ours, tables)
    reads: dict[str, tuple[Conditions, ...] | None] = {}
    for table in ours:
        name = table.name.lower()
        conditions = _dt_conditions(table)
        if conditions is None or reads.get(name, ()) is None:
            reads[name] = None
        else:
            reads[name] = (*(reads.get(name) or ()), conditions)
        table.set("db", exp.to_identifier(database, quoted=True))
        table.set("catalog", None)
    return Translation(tree.sql(dialect="duckdb"), reads)


def _first_error(err: SqlglotError) -> str:
    if isinstance(err, ParseError) and err.errors:
        first = err.errors[0]
        return f"{first.get('description')} (line {first.get('line')}, column {first.get('col')})"
    return " ".join(str(err).split())


def _our_tables(
    tree: exp.Expr, database: str, tables: Mapping[str, Sequence[str]]
) -> list[exp.Table]:
    """The references to the database's Glue tables; a table of the database that does not
    exist is an error here, where it can be named."""
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    found = []
    for table in tree.find_all(exp.Table):
        name, db = table.name.lower(), table.db.lower()
        if not name or (not db and name in ctes):
            continue
        if db not in ("", database.lower()):
            raise TranslateError(
                f"no database {table.db!r} here: the tables are in {database!r} "
                f"({', '.join(sorted(tables))})"
            )
        if name not in tables:
            raise TranslateError(
                f"no table {table.name!r} in {database!r}; its tables: {', '.join(sorted(tables))}"
            )
        found.append(table)
    return found


def _expand_stars(
    tree: exp.Expr, ours: Sequence[exp.Table], tables: Mapping[str, Sequence[str]]
) -> None:
    """`SELECT *` and `t.*` over the Glue tables as their columns: Athena's `*` leaves out the
    pseudo-column `"$path"`, which the local views hold as a column."""
    ids = {id(t) for t in ours}
    for select in list(tree.find_all(exp.Select)):
        sources = _sources(select)
        by_alias = {
            t.alias_or_name.lower(): t for t in sources if isinstance(t, exp.Table) and id(t) in ids
        }
        expanded: list[exp.Expr] = []
        changed = False
        for projection in select.expressions:
            if isinstance(projection, exp.Star) and all(
                isinstance(s, exp.Table) and id(s) in ids for s in sources
            ):
                for source in sources:
                    assert isinstance(source, exp.Table)  # noqa: S101  # checked just above
                    expanded += _columns(source, tables)
                changed = True
            elif (
                isinstance(projection, exp.Column)
                and isinstance(projection.this, exp.Star)
                and projection.table.lower() in by_alias
            ):
                expanded += _columns(by_alias[projection.table.lower()], tables)
                changed = True
            else:
                expanded.append(projection)
        if changed:
            select.set("expressions", expanded)


def _sources(select: exp.Select) -> list[exp.Expr]:
    found: list[exp.Expr] = []
    source = select.args.get("from") or select.args.get("from_")
    if source is not None:
        found.append(source.this)
    found += [join.this for join in select.args.get("joins") or []]
    return found


def _columns(table: exp.Table, tables: Mapping[str, Sequence[str]]) -> list[exp.Expr]:
    alias = table.alias_or_name
    return [
        exp.column(name, table=exp.to_identifier(alias, quoted=True), quoted=True)
        for name in tables[table.name.lower()]
    ]


def _dt_conditions(table: exp.Table) -> Conditions | None:
    """The conditions on `dt` that the SELECT reading `table` alone puts in its WHERE; None
    when it reads more than that table, or says nothing of `dt`."""
    select = table.parent_select
    if not isinstance(select, exp.Select) or _sources(select) != [table]:
        return None
    where = select.args.get("where")
    if where is None:
        return None
    names = {"", table.alias_or_name.lower()}
    found: list[Condition] = []
    for conjunct in where.this.flatten() if isinstance(where.this, exp.And) else [where.this]:
        condition = _condition(_unwrap(conjunct), names)
        if condition is not None:
            found.append(condition)
    return tuple(found) or None


def _unwrap(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _condition(node: exp.Expr, names: set[str]) -> Condition | None:
    def is_dt(side: exp.Expr) -> bool:
        side = _unwrap(side)
        return (
            isinstance(side, exp.Column)
            and side.name.lower() == PARTITION
            and side.table.lower() in names
        )

    def constant(side: exp.Expr) -> str | None:
        if side.find(exp.Column, exp.Query, exp.Placeholder) is not None:
            return None
        return side.sql(dialect="duckdb")

    operator = _OPERATORS.get(type(node))
    if operator is not None and isinstance(node, exp.Binary):
        for dt_side, other, op in (
            (node.left, node.right, operator),
            (node.right, node.left, _FLIPPED[operator]),
        ):
            value = constant(other) if is_dt(dt_side) else None
            if value is not None:
                return Condition(op, (value,))
        return None
    if isinstance(node, exp.Between) and is_dt(node.this):
        low, high = constant(node.args["low"]), constant(node.args["high"])
        if low is not None and high is not None:
            return Condition("between", (low, high))
        return None
    if isinstance(node, exp.In) and is_dt(node.this) and not node.args.get("query"):
        values = [constant(v) for v in node.expressions]
        if values and all(v is not None for v in values):
            return Condition("in", tuple(v for v in values if v is not None))
    return None
