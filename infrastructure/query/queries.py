"""The named queries: the files Terraform makes Athena named queries of, read the same way here.

`infrastructure/terraform/queries/<name>.sql` is the operational query `<name>`, a Terraform
template of `${database}`, `${buffers_table}` and `${errors_table}`;
`queries/per_table/<kind>.sql` is a template of `${database}` and `${table}`, the query
`<table>_<kind>` of every payload table. Line 1 of a file is `-- <description>`; an optional
line 2, `-- parameters: <name> (<what>), …`, names its `?` placeholders in order. A value is
given to Athena (and to DuckDB) as a string literal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlglot import TokenType
from sqlglot.dialects.athena import Athena
from sqlglot.errors import SqlglotError

from infrastructure.query.tables import BUFFERS, ERRORS

QUERIES_DIR: Final = Path(__file__).resolve().parent.parent / "terraform" / "queries"
PER_TABLE: Final = "per_table"

_PARAMETERS_LINE: Final = re.compile(r"^--\s*parameters:\s*(?P<list>.*)$")
_PARAMETER: Final = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*)\s*(?:\((?P<what>.*)\))?$")
_TEMPLATE: Final = re.compile(r"(\$\$\{)|\$\{\s*([^}]*?)\s*\}|(%\{)")


class QueryFileError(ValueError):
    """A query file that cannot be used as it is; names the file and what is wrong."""


class ParameterError(ValueError):
    """The values given do not fit the query's parameters; names the parameter."""


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    what: str = ""

    def __str__(self) -> str:
        return f"{self.name} ({self.what})" if self.what else self.name


@dataclass(frozen=True, slots=True)
class NamedQuery:
    name: str
    description: str
    parameters: tuple[Parameter, ...]
    template: str
    path: Path
    table: str | None = None
    """The payload table of a per-table query; None for an operational one."""

    def sql(self, database: str) -> str:
        """The query Athena runs (the named query Terraform makes of the file)."""
        return render(self.template, _variables(database, self.table), where=str(self.path))


def _variables(database: str, table: str | None) -> dict[str, str]:
    """What Terraform's templatefile gives a query file (glue_athena.tf)."""
    if table is None:
        return {"database": database, "buffers_table": BUFFERS, "errors_table": ERRORS}
    return {"database": database, "table": table}


def named_queries(payload_tables: Sequence[str], directory: Path = QUERIES_DIR) -> list[NamedQuery]:
    """Every named query, sorted by name: the operational ones, and each per-table template for
    each of `payload_tables`."""
    found = [_read(path, path.stem, None) for path in sorted(directory.glob("*.sql"))]
    for path in sorted((directory / PER_TABLE).glob("*.sql")):
        found += [_read(path, f"{table}_{path.stem}", table) for table in payload_tables]
    return sorted(found, key=lambda q: q.name)


def find(name: str, queries: Sequence[NamedQuery]) -> NamedQuery:
    for query in queries:
        if query.name == name:
            return query
    close = [q.name for q in queries if name in q.name or q.name in name]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ParameterError(
        f"no named query {name!r}{hint}: `sluice query --list` lists them, "
        "`--sql` runs SQL of your own"
    )


def _read(path: Path, name: str, table: str | None) -> NamedQuery:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise QueryFileError(f"cannot read {path}: {err.strerror or err}") from err
    lines = text.splitlines()
    if not lines or not lines[0].startswith("--"):
        raise QueryFileError(f"{path}: line 1 must be `-- <description>`")
    description = lines[0][2:].strip()
    parameters: tuple[Parameter, ...] = ()
    if len(lines) > 1 and (match := _PARAMETERS_LINE.match(lines[1].strip())):
        parameters = parse_parameters(match["list"], where=str(path))
    rendered = render(text, _variables("database", table), where=str(path))
    placeholders = count_placeholders(rendered, where=str(path))
    if placeholders != len(parameters):
        raise QueryFileError(
            f"{path}: {placeholders} `?` placeholder(s) but {len(parameters)} parameter(s) named "
            "on line 2 (`-- parameters: <name> (<what>), …`, one per `?`, in order)"
        )
    return NamedQuery(name, description, parameters, text, path, table)


def parse_parameters(listed: str, *, where: str) -> tuple[Parameter, ...]:
    """`key (the landed key), since (first dt yyyy-MM-dd)` -> the parameters, in order."""
    items: list[str] = []
    depth, current = 0, ""
    for char in listed:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    parameters = []
    for item in (i.strip() for i in items):
        match = _PARAMETER.match(item)
        if match is None:
            raise QueryFileError(
                f"{where}: parameter {item!r} is not `<name> (<what>)` (name: a-z, 0-9, _)"
            )
        parameters.append(Parameter(match["name"], (match["what"] or "").strip()))
    names = [p.name for p in parameters]
    if len(set(names)) != len(names):
        raise QueryFileError(f"{where}: a parameter is named twice in {names}")
    return tuple(parameters)


def count_placeholders(sql: str, *, where: str) -> int:
    """The `?` placeholders of Athena's SQL (not those in strings, quoted names or comments)."""
    try:
        tokens = Athena().tokenize(sql)
    except SqlglotError as err:
        raise QueryFileError(f"{where}: cannot read the SQL: {err}") from err
    return sum(1 for token in tokens if token.token_type is TokenType.PLACEHOLDER)


def render(template: str, variables: Mapping[str, str], *, where: str) -> str:
    """Terraform's `templatefile` for the queries: `${name}` is the variable, `$${` is `${`.
    A variable the template names but is not given fails, as it does in Terraform."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(1):
            return "${"
        if match.group(3):
            raise QueryFileError(f"{where}: template directives (%{{…}}) are not supported")
        name = match.group(2)
        if name not in variables:
            raise QueryFileError(
                f"{where}: unknown template variable ${{{name}}} (known: "
                f"{', '.join('${' + v + '}' for v in sorted(variables))})"
            )
        return variables[name]

    return _TEMPLATE.sub(substitute, template)


def bind(
    parameters: Sequence[Parameter],
    positional: Sequence[str],
    named: Mapping[str, str],
    *,
    query: str,
) -> list[str]:
    """The values of `parameters` in order, from positional values then `--param name=value`."""
    if len(positional) > len(parameters):
        wanted = ", ".join(str(p) for p in parameters) or "none"
        raise ParameterError(
            f"{query} takes {len(parameters)} parameter(s) ({wanted}), "
            f"{len(positional)} value(s) given"
        )
    known = {p.name for p in parameters}
    unknown = sorted(set(named) - known)
    if unknown:
        raise ParameterError(
            f"{query} has no parameter {', '.join(unknown)} (its parameters: "
            f"{', '.join(str(p) for p in parameters) or 'none'})"
        )
    values: list[str] = []
    for index, parameter in enumerate(parameters):
        if index < len(positional):
            if parameter.name in named:
                raise ParameterError(
                    f"{query}: parameter {parameter.name} given twice, as value {index + 1} "
                    f"and as --param {parameter.name}=…"
                )
            values.append(positional[index])
        elif parameter.name in named:
            values.append(named[parameter.name])
        else:
            raise ParameterError(
                f"{query} needs parameter {parameter}: --param {parameter.name}=VALUE"
            )
    return values


def literal(value: str) -> str:
    """A value as the SQL string literal Athena's ExecutionParameters take."""
    return "'" + value.replace("'", "''") + "'"
