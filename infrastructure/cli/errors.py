"""What an operator command prints when it fails: one line naming what was wrong and what to do.

Exit status 2 for a usage error, 1 for anything else; `sluice --debug …` re-raises instead.
"""

from __future__ import annotations

import re
from typing import Final

import urllib3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from minio.error import MinioException, S3Error

from infrastructure.local.stack.stack_file import NoStackError

USAGE: Final = 2
FAILED: Final = 1

_ANSI: Final = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class UsageError(ValueError):
    """The command line asks for something that cannot be done as given (exit status 2)."""


class DeploymentError(RuntimeError):
    """The deployment could not be found or read; the message says how to get one."""


def one_line(text: str) -> str:
    """`text` without colour codes, its lines joined: messages may quote other tools' output."""
    return " ".join(_ANSI.sub("", text).split())


def explain(err: Exception) -> tuple[str, int]:
    """The one-line message and exit status for an error a command did not handle itself."""
    return one_line(_describe(err)), USAGE if isinstance(err, UsageError) else FAILED


def _describe(err: Exception) -> str:  # noqa: PLR0911  # one return per kind of error
    if isinstance(err, UsageError | NoStackError | DeploymentError):
        return str(err)
    if isinstance(err, EndpointConnectionError):
        return (
            f"cannot reach {err.kwargs.get('endpoint_url', 'the AWS endpoint')}: is the local "
            "stack running (`sluice up`; `sluice down` cleans up after one that died)? Against "
            "AWS, check the network"
        )
    if isinstance(err, NoCredentialsError | PartialCredentialsError):
        return "no AWS credentials: set AWS_PROFILE (or the AWS_* keys) for the account"
    if isinstance(err, NoRegionError):
        return "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)"
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        return (
            f"AWS refused {err.operation_name}: {error.get('Code', '?')} "
            f"({error.get('Message', '')}); check the deployment (--env) and your permissions"
        )
    if isinstance(err, BotoCoreError):
        return f"AWS: {err}"
    if isinstance(err, MinioException | urllib3.exceptions.HTTPError):
        return f"{minio_problem(err)}; run again once MinIO is back"
    if isinstance(err, OSError):
        return f"{err.strerror or err}" + (f" ({err.filename})" if err.filename else "")
    return f"{type(err).__name__}: {err} (unexpected: `sluice --debug …` shows where it happened)"


def minio_problem(err: BaseException) -> str:
    """One line on why a minio call failed: unreachable, reset, or refused with a code."""
    if isinstance(err, urllib3.exceptions.MaxRetryError) and err.reason is not None:
        err = err.reason
    if isinstance(err, S3Error):
        return one_line(f"MinIO refused: {err.code} ({err.message})")
    if isinstance(err, urllib3.exceptions.NewConnectionError):
        reason = str(err).rpartition(": ")[2] or type(err).__name__
        return f"MinIO does not answer at {err.conn.host}:{err.conn.port} ({reason})"
    if isinstance(err, urllib3.exceptions.ProtocolError) and len(err.args) > 1:
        cause = err.args[1]
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else cause
        return one_line(f"MinIO does not answer ({err.args[0]} {reason})")
    return one_line(f"MinIO does not answer ({type(err).__name__}: {err})")
