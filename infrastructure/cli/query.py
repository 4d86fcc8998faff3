"""`sluice query NAME [VALUE…] | --sql SQL | --list [--local | --env ENV] [--json | --csv]`.

Runs one of the named queries (infrastructure/terraform/queries/, the same files Terraform makes
Athena named queries of) or SQL of your own in Athena's dialect: on Athena for a deployment
(`--env ENV`), or, by default, with DuckDB over the running local stack's staging bucket. The
same query gives the same result either way (infrastructure/query/, the command itself in
`command.py`). Results print as an aligned table, a JSON list of objects (`--json`) or CSV
(`--csv`); progress goes to stderr.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from infrastructure.cli import deployment


def register(commands: Any) -> None:
    command = commands.add_parser(
        "query",
        help="run a named Athena query (or SQL): locally with DuckDB, or on Athena with --env",
        description="Run a named query (`--list` shows them, their parameters and what they "
        "answer) or SQL in Athena's dialect (--sql). Without --env it runs locally: DuckDB over "
        "the running stack's staging bucket, whose objects for the tables and dt partitions the "
        "query reads are first copied under .sluice/run/query-cache/. With --env ENV it runs on "
        "Athena in that deployment's workgroup and database. Parameters are given in order "
        "after the name, or as --param NAME=VALUE; each is a string. Exit status 1 when the "
        "query fails, 2 for a wrong command line.",
    )
    command.add_argument(
        "arguments",
        nargs="*",
        metavar="NAME [VALUE ...]",
        help="the named query, then its parameters' values in order (with --sql: the values)",
    )
    command.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter of the named query by name (repeatable)",
    )
    command.add_argument(
        "--sql", help="SQL in Athena's dialect instead of a named query ('-': from stdin)"
    )
    command.add_argument(
        "--list", action="store_true", help="list the named queries and their parameters"
    )
    deployment.add_arguments(command)
    output = command.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="a JSON list of objects, one a row")
    output.add_argument("--csv", action="store_true", help="CSV with a header row")
    command.set_defaults(run=run)


def run(args: argparse.Namespace, root: Path) -> int:
    # DuckDB and sqlglot take a fifth of a second to import: only `sluice query` pays for them.
    from infrastructure.query import command  # noqa: PLC0415  # see above

    return command.run(args, root)
