"""What `sluice query` does (infrastructure/cli/query.py parses its command line): the query
and its values from the arguments, run on Athena (`--env`) or locally, the result printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import boto3

from infrastructure.cli import deployment
from infrastructure.cli.errors import DeploymentError, UsageError
from infrastructure.payload_tables import PayloadTable, PayloadTableError, payload_tables
from infrastructure.query import results
from infrastructure.query.athena import AthenaQueryError, AthenaTarget, run_athena
from infrastructure.query.local import LOCAL_DATABASE, LocalQueryError, mirror_of, run_local
from infrastructure.query.queries import (
    NamedQuery,
    ParameterError,
    QueryFileError,
    bind,
    find,
    named_queries,
)
from infrastructure.query.tables import TableTypeError, all_tables
from infrastructure.query.translate import TranslateError
from infrastructure.tunables import load_tunables

FAILURES = (
    AthenaQueryError,
    LocalQueryError,
    TranslateError,
    QueryFileError,
    TableTypeError,
    PayloadTableError,
)
"""What a query that cannot run raises: one line on stderr, exit status 1."""


def run(args: argparse.Namespace, root: Path) -> int:
    if args.list and (args.sql or args.arguments or args.param or args.csv):
        raise UsageError("--list takes no query, values or --csv")
    try:
        tables = payload_tables(load_tunables().processor.payload_schemas)
        queries = named_queries([t.name for t in tables])
        if args.list:
            print(_listing(queries, as_json=args.json))
            return 0
        result = _run(args, root, tables, queries)
    except FAILURES as err:
        print(f"sluice query: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(results.json_text(result))
    elif args.csv:
        print(results.csv_text(result))
    else:
        print(results.text_table(result))
    return 0


def _run(
    args: argparse.Namespace,
    root: Path,
    tables: Sequence[PayloadTable],
    queries: Sequence[NamedQuery],
) -> results.Result:
    sql_in, values = _query(args, queries)  # the command line checked before AWS is asked
    if args.env:
        athena = athena_target(root, args.env)
        client = boto3.client("athena", region_name=athena.region)
        return run_athena(client, athena, sql_in(athena.database), values, say=_say)
    target = deployment.resolve(args, root)
    mirror = mirror_of(target.client("s3"), target.staging_bucket, root, _say)
    return run_local(mirror, sql_in(LOCAL_DATABASE), values, tables=all_tables(tables))


def _query(
    args: argparse.Namespace, queries: Sequence[NamedQuery]
) -> tuple[Callable[[str], str], list[str]]:
    """The SQL to run (given the Glue database's name) and the values of its `?`, from the
    command line."""
    named = _params(args.param)
    if args.sql is not None:
        if named:
            raise UsageError("--param names a named query's parameters; with --sql give values")
        sql = sys.stdin.read() if args.sql == "-" else args.sql
        return (lambda _database: sql), list(args.arguments)
    if not args.arguments:
        raise UsageError("name a query (`sluice query --list` lists them) or give --sql")
    name, *positional = args.arguments
    try:
        query = find(name, queries)
        return query.sql, bind(query.parameters, positional, named, query=name)
    except ParameterError as err:
        raise UsageError(str(err)) from err


def _params(given: Sequence[str]) -> dict[str, str]:
    named: dict[str, str] = {}
    for item in given:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise UsageError(f"--param {item!r} is not NAME=VALUE")
        if name in named:
            raise UsageError(f"--param {name} is given twice")
        named[name] = value
    return named


def athena_target(root: Path, environment: str) -> AthenaTarget:
    """The deployment's workgroup and database, from its Terraform outputs."""
    document = deployment.terraform_json(root, environment, "output")
    outputs = {name: value["value"] for name, value in document.items()}
    missing = [name for name in ("athena_workgroup", "glue_database") if name not in outputs]
    if missing:
        raise DeploymentError(
            f"environment {environment!r} has no Terraform output {', '.join(missing)}: run "
            f"`make deploy ENV={environment}` first"
        )
    return AthenaTarget(
        environment=environment,
        region=load_tunables().region,
        workgroup=outputs["athena_workgroup"],
        database=outputs["glue_database"],
    )


def _listing(queries: Sequence[NamedQuery], *, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            [
                {
                    "name": q.name,
                    "description": q.description,
                    "parameters": [{"name": p.name, "what": p.what} for p in q.parameters],
                    "table": q.table,
                }
                for q in queries
            ]
        )
    lines = []
    for query in queries:
        lines.append(" ".join([query.name, *(p.name.upper() for p in query.parameters)]))
        lines.append(f"    {query.description}")
        lines += [f"    {p.name.upper()}: {p.what or p.name}" for p in query.parameters]
    return "\n".join(lines)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
