"""`sluice`: the operator's command (`.venv/bin/sluice` after `make install`).

    sluice up [--time-scale N] [--buffer-seconds S] [--detach]   the local stack (make run)
    sluice down                                                  stop a detached stack
    sluice put FILE...                                           files into the landing bucket
    sluice load --rate R --seconds T                             a realistic load, and its result
    sluice smoke [--local | --env ENV]                           a sample file through, verified
    sluice status [--local | --env ENV] [--json]                 what is where, and how late
    sluice reconcile [--since T] [--until T] [--all] [--json]    each landed file: where it is
    sluice trace s3://BUCKET/KEY[?versionId=V] [--json]          one file's story, stage by stage
    sluice pause|resume forwarder|delivery [--local | --env ENV]  stop/restart a stage, nothing lost
    sluice chaos minio-down|throttle|duplicate-events|crash|corrupt-upload|status|clear
                                                                 gameday chaos, local stack only
    sluice extract --endpoint E --bucket B --out DIR --since T [--until T] | --window ID
                                                                 on-prem: MinIO's windows, verified

Every subcommand has `--help`. The local stack's state is in `<root>/.sluice/`, where root is
$SLUICE_ROOT, else the checkout Sluice runs from, else the current directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from types import ModuleType

from infrastructure import environment
from infrastructure.cli import (
    capacity,
    chaos,
    deployment,
    extract,
    files,
    pause,
    quarantine,
    reconcile,
    redrive,
    replay,
    smoke,
    status,
    trace,
    up,
)
from infrastructure.cli.deployment import DeploymentError
from infrastructure.local.stack_file import NoStackError

OPERATIONS: tuple[ModuleType, ...] = (
    reconcile,
    trace,
    redrive,
    replay,
    quarantine,
    pause,
    chaos,
    capacity,
    extract,
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


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="sluice",
        description="Sluice: files dropped into S3, delivered to MinIO as one-minute, "
        "checksummed gzip archives.",
    )
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    start = commands.add_parser(
        "up",
        help="run the whole pipeline locally (moto, Firehose, Lambda, SeaweedFS as MinIO)",
        description="Start the local stack, print how to upload, then a status line. "
        "Ctrl-C or SIGTERM flushes Firehose, lets deliveries finish and stops everything.",
    )
    up.add_arguments(start)
    start.set_defaults(run=up.up)

    stop = commands.add_parser("down", help="stop the local stack (flushing it first)")
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
    upload.set_defaults(run=files.put)

    generate = commands.add_parser(
        "load",
        help="write a realistic mix of files at a rate, then report what arrived in MinIO",
        description="Land files (JSON, CSV, NDJSON orders, binary, a few large ones; awkward "
        "keys) at --rate for --seconds, wait for them in MinIO, and report arrivals, losses, "
        "duplicates and latency percentiles. Exit status 1 if any file is missing or doubled.",
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
    try:
        return int(args.run(args, project_root()))
    except (NoStackError, DeploymentError) as err:
        print(f"sluice {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
