"""`sluice extract`: the on-prem consumer's command — committed windows from MinIO into a folder.

Needs MinIO only, no AWS. The work is delivery.extract; this module reads the command line,
builds the minio client (TLS verified unless --insecure), prints progress on stderr and the
summary on stdout. Exit status 0 when everything in range was extracted, 1 when a window failed
or a path was refused (the rest is extracted) or MinIO could not be read, 2 when the command
line is wrong; always one line saying why, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import MinioException
from minio.helpers import check_bucket_name

from delivery.extract import ExtractError, ExtractSummary, extract, size_text
from infrastructure.cli import deployment
from infrastructure.cli.times import time_argument

ACCESS_KEY_ENV: Final = "SLUICE_MINIO_ACCESS_KEY"
SECRET_KEY_ENV: Final = "SLUICE_MINIO_SECRET_KEY"  # noqa: S105  # a variable's name, not a key
DEFAULT_PREFIX: Final = "sluice"
CONNECT_TIMEOUT_SECONDS: Final = 10.0
READ_TIMEOUT_SECONDS: Final = 120.0


class UsageError(ValueError):
    """The command line is wrong: exit status 2, the message names the option."""


def register(commands: Any) -> None:
    now = datetime.now(UTC)  # one `now` for every time argument
    command = commands.add_parser(
        "extract",
        help="the on-prem consumer's command: committed windows from MinIO into a folder",
        description="Extract the committed windows of [--since, --until) — or one --window — "
        "from MinIO into --out as the landing tree: each landing key a file, the newest "
        "version by S3 sequencer (--all-versions: every version, as <key>~v<sequencer>). Only "
        "windows whose <window-id>.manifest.json exists are read; every part is checked "
        "against it (size, sha256, each member's sha256) and a window that does not match is "
        "not written. Keys that cannot coexist on a file system are renamed <name>~<8 hex of "
        "the file id>; extract-index.json in --out maps every path written to its key, "
        "version, sequencer and window. Times are ISO-8601 (naive means UTC) or a duration ago "
        "(30s, 90m, 2h, 1d). Exit status 1 when a window failed or a path was refused, 2 when "
        "the command line is wrong.",
    )
    command.add_argument(
        "--endpoint",
        required=True,
        metavar="HOST:PORT|URL",
        help="MinIO's S3 endpoint: host:port (TLS unless --insecure), or http(s)://host:port",
    )
    command.add_argument("--access-key", help=f"MinIO access key (default: ${ACCESS_KEY_ENV})")
    command.add_argument(
        "--secret-key",
        help=f"MinIO secret key (default: ${SECRET_KEY_ENV}; prefer the variable, which keeps "
        "the key out of shell history and the process list)",
    )
    command.add_argument(
        "--insecure", action="store_true", help="plain HTTP (no TLS): for a test MinIO only"
    )
    command.add_argument(
        "--ca-bundle",
        type=Path,
        metavar="PATH",
        help="PEM file of the CAs to trust for MinIO's certificate (default: the system's)",
    )
    command.add_argument("--bucket", required=True, help="the archive bucket in MinIO")
    command.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"delivery.archive_prefix (default {DEFAULT_PREFIX})",
    )
    times = time_argument(now)
    command.add_argument("--since", type=times, metavar="T", help="start, inclusive")
    command.add_argument("--until", type=times, metavar="T", help="end, exclusive (default: now)")
    command.add_argument(
        "--window",
        metavar="ID",
        help="one window, by id (found in the hours its id names, or in --since/--until)",
    )
    command.add_argument(
        "--all-versions",
        action="store_true",
        help="write every version of a key as <key>~v<sequencer> (<key>~v<version id> when it "
        "has no sequencer), not only the newest as <key>",
    )
    command.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="folder to write into"
    )
    command.set_defaults(run=run, now=now)


def run(args: argparse.Namespace, root: Path) -> int:
    del root  # extract reads MinIO only, never the local stack
    # urllib3 logs each retry as a warning; the one line that matters is ours
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    try:
        client = client_of(args)
        since, until = time_range(args)
        out = output_folder(args.out)
        prefix = archive_prefix(args.prefix)
    except UsageError as err:
        print(f"sluice extract: {err}", file=sys.stderr)
        return 2

    def progress(line: str) -> None:
        print(f"sluice extract: {line}", file=sys.stderr, flush=True)

    try:
        summary = extract(
            client,
            args.bucket,
            prefix,
            out,
            since=since,
            until=until,
            window_id=args.window,
            all_versions=args.all_versions,
            progress=progress,
        )
    except ExtractError as err:
        print(f"sluice extract: {err}", file=sys.stderr)
        return 2 if err.bad_input else 1
    except (MinioException, urllib3.exceptions.HTTPError) as err:
        print(f"sluice extract: MinIO at {args.endpoint}: {_describe(err)}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:  # the disk, or what minio refuses to send
        print(f"sluice extract: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sluice extract: interrupted (files in place are whole)", file=sys.stderr)
        return 130
    for failure in summary.failures:
        print(f"sluice extract: failed: {failure}", file=sys.stderr)
    print(text(summary, out))
    return 0 if summary.ok else 1


def client_of(args: argparse.Namespace) -> Minio:
    endpoint, secure = endpoint_of(args.endpoint, insecure=args.insecure)
    access_key = args.access_key or os.environ.get(ACCESS_KEY_ENV)
    secret_key = args.secret_key or os.environ.get(SECRET_KEY_ENV)
    if not access_key or not secret_key:
        raise UsageError(
            f"MinIO keys missing: give --access-key and --secret-key, or set {ACCESS_KEY_ENV} "
            f"and {SECRET_KEY_ENV}"
        )
    try:
        check_bucket_name(args.bucket, strict=True)
    except ValueError as err:
        raise UsageError(f"--bucket: {err}") from None
    ca_bundle: Path | None = args.ca_bundle
    if ca_bundle is not None and not secure:
        raise UsageError("--ca-bundle is for TLS, and --insecure (or http://) turns TLS off")
    if ca_bundle is not None and not ca_bundle.is_file():
        raise UsageError(f"--ca-bundle {ca_bundle}: no such file")
    try:
        return deployment.minio_client(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            ca_bundle=str(ca_bundle) if ca_bundle else None,
            retries=urllib3.Retry(
                total=3, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504)
            ),
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
        )
    except ValueError as err:
        raise UsageError(f"--endpoint {args.endpoint!r}: {err}") from None


def endpoint_of(text: str, *, insecure: bool) -> tuple[str, bool]:
    """`host:port` and whether to use TLS, from `host:port` or `http(s)://host:port`."""
    value = text.strip()
    if "://" not in value:
        if not value or "/" in value:
            raise UsageError(f"--endpoint {text!r} is not host:port or http(s)://host:port")
        return value, not insecure
    parsed = urlsplit(value)
    if (
        parsed.scheme not in ("http", "https")
        or not parsed.netloc
        or parsed.path not in ("", "/")
        or parsed.query
        or parsed.fragment
        or "@" in parsed.netloc
    ):
        raise UsageError(f"--endpoint {text!r} is not host:port or http(s)://host:port")
    if parsed.scheme == "https" and insecure:
        raise UsageError(f"--endpoint {text!r} says https, --insecure says plain HTTP")
    return parsed.netloc, parsed.scheme == "https"


def time_range(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    since: datetime | None = args.since
    until: datetime | None = args.until
    if since is None:
        if until is not None:
            raise UsageError("--until needs --since")
        if args.window is None:
            raise UsageError("say what to extract: --since T [--until T], or --window ID")
        return None, None
    until = until or args.now
    if since >= until:
        raise UsageError(
            f"--since {since:%Y-%m-%dT%H:%M:%SZ} is not before --until {until:%Y-%m-%dT%H:%M:%SZ}"
        )
    return since, until


def archive_prefix(text: str) -> str:
    prefix = text.strip("/")
    if not prefix:
        raise UsageError("--prefix is empty")
    return prefix


def output_folder(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    return out


def text(summary: ExtractSummary, out: Path) -> str:
    counts = ", ".join(
        [
            f"{summary.files_written} file(s) written",
            f"{summary.older_skipped} older version(s) skipped",
            f"{summary.repeats_skipped} repeated delivery(ies) skipped",
            f"{summary.excluded} file(s) excluded by delivery",
            f"{summary.uncommitted_parts} uncommitted part(s) seen",
            f"{len(summary.failures)} failure(s)",
            f"{size_text(summary.bytes_downloaded)} read",
        ]
    )
    index = f"; index {summary.index}" if summary.index else ""
    return (
        f"extracted {summary.windows_extracted} of {summary.windows} window(s) into {out}: "
        f"{counts}{index}"
    )


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib3.exceptions.MaxRetryError) and err.reason is not None:
        return f"does not answer: {err.reason}"
    return f"{type(err).__name__}: {err}"
