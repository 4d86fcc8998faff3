"""`sluice`: the operator's command (`.venv/bin/sluice` after `make install`).

    sluice up [--time-scale N] [--buffer-seconds S] [--detach]   the local stack (make run)
    sluice down                                                  stop a detached stack
    sluice put [--api] FILE...                                   files into the landing bucket
    sluice load --rate R --seconds T                             a realistic load, and its result
    sluice smoke [--local | --env ENV]                           a sample file through, verified
    sluice status [--local | --env ENV] [--json]                 what is where, and how late
    sluice reconcile [--since T] [--until T] [--all] [--json]    each landed file: where it is
    sluice report [--date D] [--format txt|json|html] [--out PATH]  the daily report of a UTC day
    sluice trace s3://BUCKET/KEY[?versionId=V] [--json]          one file's story, stage by stage
    sluice query NAME [VALUE...] | --sql SQL | --list [--env ENV] [--json | --csv]
                                                                 Athena's named queries, locally too
    sluice pause|resume forwarder|delivery [--local | --env ENV]  stop/restart a stage, nothing lost
    sluice chaos minio-down|throttle|duplicate-events|crash|corrupt-upload|status|clear
                                                                 gameday chaos, local stack only
    sluice producer add NAME | list [--local | --env ENV]        the HTTPS intake's producers, keys
    sluice extract --endpoint E --bucket B --out DIR --since T [--until T] | --window ID
                                                                 on-prem: MinIO's windows, verified

Every subcommand has `--help`. An error is one line on stderr (exit status 2 for a usage error,
1 otherwise); `--debug` shows its traceback instead. The local stack's state is in
`<root>/.sluice/`, where root is $SLUICE_ROOT, else the checkout Sluice runs from, else the
current directory.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from infrastructure import environment
from infrastructure.cli import (
    capacity,
    chaos,
    deployment,
    extract,
    files,
    pause,
    producer,
    quarantine,
    query,
    reconcile,
    redrive,
    replay,
    report,
    smoke,
    status,
    trace,
    up,
)
from infrastructure.cli.errors import explain

OPERATIONS: tuple[ModuleType, ...] = (
    reconcile,
    report,
    trace,
    query,
    redrive,
    replay,
    quarantine,
    pause,
    chaos,
    capacity,
    extract,
    producer,
)
"""Modules of the operator's commands; each adds its subcommands in `register(commands)`."""


def project_root() -> Path:
    configured = os.environ.get(environment.ROOT)
    if configured:
        return Path(configured).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "Makefile").is_file():
        return checkout
    return Path.cwd()


PROG = "sluice"
DEBUG_HELP = "on an error, show its traceback instead of one line"


class CommandParser(argparse.ArgumentParser):
    """argparse, but an argument a subcommand does not know is reported with that subcommand's
    usage (argparse leaves it to the top-level parser, whose usage says nothing useful), and
    `--debug` is taken after the subcommand as well as before it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.prog != PROG:  # a subcommand: only set when given, not to override the global
            self.add_argument(
                "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
            )

    def parse_known_args(  # type: ignore[override]  # one signature for argparse's overloads
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:  # a subcommand's own: its subcommands reported theirs already
            self.error(f"unrecognized arguments: {' '.join(extras)} (see {self.prog} --help)")
        return parsed, extras


def parser() -> argparse.ArgumentParser:
    main = CommandParser(
        prog=PROG,
        description="Sluice: files dropped into S3, delivered to MinIO as one-minute, "
        "checksummed gzip archives.",
    )
    main.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    start = commands.add_parser(
        "up",
        help="run the whole pipeline locally (moto, Firehose, Lambda, SeaweedFS as MinIO)",
        description="Start the local stack, print how to upload, then a status line. "
        "Ctrl-C or SIGTERM flushes Firehose, lets deliveries finish and stops everything.",
    )
    up.add_arguments(start)
    start.set_defaults(run=up.up)

    stop = commands.add_parser(
        "down",
        help="stop the local stack (flushing it first)",
        description="Stop the local stack started by `sluice up --detach` (or in another "
        "terminal): Firehose's buffers are flushed and deliveries in flight finish, then every "
        "process it started exits. After --timeout it is killed. Without a running stack it "
        "says so and exits 0.",
    )
    stop.add_argument(
        "--timeout",
        type=float,
        default=up.DOWN_TIMEOUT_SECONDS,
        help=f"seconds to wait before killing it (default {up.DOWN_TIMEOUT_SECONDS:.0f})",
    )
    stop.set_defaults(run=up.down)

    upload = commands.add_parser(
        "put",
        help="upload files to the local stack's landing bucket",
        description="Upload files (a directory: every file in it, keys relative to it).",
    )
    upload.add_argument("files", nargs="+", metavar="FILE")
    upload.add_argument("--prefix", default="", help="key prefix, e.g. acme/2026/ (default none)")
    upload.add_argument(
        "--api",
        action="store_true",
        help="post them to the HTTPS intake as the producer demo instead (docs/intake.md): "
        "they land under demo/api/files/<date>/",
    )
    upload.set_defaults(run=files.put)

    generate = commands.add_parser(
        "load",
        help="write a realistic mix of files at a rate, then report what arrived in MinIO",
        description="Land files (JSON, CSV, the payload types' NDJSON orders, CSV readings and "
        "JSON profiles, binary, a few large ones; awkward keys) at --rate for --seconds, wait "
        "for them in MinIO, and report arrivals, losses, duplicates and latency percentiles. "
        "Exit status 1 if any file is missing or doubled.",
    )
    generate.add_argument("--rate", type=float, default=10.0, help="files per second (10)")
    generate.add_argument("--seconds", type=float, default=60.0, help="how long to send (60)")
    generate.add_argument("--seed", type=int, default=0, help="of the file mix (0)")
    generate.add_argument(
        "--wait",
        type=float,
        default=None,
        help="seconds to wait for arrivals after sending (default: two buffer intervals + 120)",
    )
    generate.set_defaults(run=files.load)

    check = commands.add_parser(
        "smoke",
        help="upload a sample file, wait for its archive in MinIO and verify it",
        description="The seeds' validation: a sample file into the landing bucket, its archive "
        "found in MinIO through the window manifests, its bytes and sha256 checked. Exit "
        "status 1 if anything does not hold.",
    )
    deployment.add_arguments(check)
    check.add_argument(
        "--timeout",
        type=float,
        default=smoke.DEFAULT_TIMEOUT_SECONDS,
        help=f"seconds to wait for the archive (default {smoke.DEFAULT_TIMEOUT_SECONDS:.0f})",
    )
    check.set_defaults(run=smoke.smoke)

    report = commands.add_parser(
        "status",
        help="queues, DLQs, windows waiting, parked, last delivery, latency",
        description="Where every file is: ingest queue depth and oldest message age, the "
        "DLQs, staged windows not yet delivered and the oldest one's age, parked windows, the "
        "last delivery and end-to-end latency percentiles (from the ledger). Exit status 1 "
        "when anything waits in a DLQ or is parked.",
    )
    deployment.add_arguments(report)
    report.add_argument("--json", action="store_true", help="one JSON object instead of text")
    report.set_defaults(run=status.status)
    for operation in OPERATIONS:
        operation.register(commands)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs = _log_to_stderr(args.command, debug=args.debug)
    try:
        return int(args.run(args, project_root()))
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"sluice {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        message, status = explain(err)
        print(f"sluice {args.command}: {message}", file=sys.stderr)
        return status
    finally:
        logging.getLogger().removeHandler(logs)


def _log_to_stderr(command: str, *, debug: bool) -> logging.Handler:
    """Code shared with the functions logs for CloudWatch; a command says what happened itself,
    so of those logs only errors are shown, a line each (all from warnings with --debug)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING if debug else logging.ERROR)
    handler.setFormatter(
        logging.Formatter(
            "%(levelname)s %(name)s: %(message)s" if debug else f"sluice {command}: %(message)s"
        )
    )
    logging.getLogger().addHandler(handler)
    return handler


if __name__ == "__main__":
    sys.exit(main())
