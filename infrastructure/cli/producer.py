"""`sluice producer add|list`: the HTTPS intake's producers and their keys (docs/intake.md).

`add NAME` makes a new key for NAME (a new producer, or another key for one, to rotate), adds
its sha256 to the producers secret, and prints the key once: only its hash is kept. `list` shows
each producer and how many keys it holds. Both work on the local stack and on AWS (`--env`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from infrastructure.cli import deployment
from infrastructure.cli.deployment import Deployment
from infrastructure.cli.errors import DeploymentError, UsageError
from transform.intake import producers, requests


def register(commands: Any) -> None:
    command = commands.add_parser(
        "producer",
        help="the HTTPS intake's producers: add one (or a key to rotate), list them",
        description="Producers post to the HTTPS intake with a key (docs/intake.md). `add NAME` "
        "prints a new key once and keeps only its sha256 in the producers secret; adding to a "
        "producer that has keys gives it one more, so a key can be rotated without downtime. "
        "`list` shows each producer and its number of keys.",
    )
    actions = command.add_subparsers(dest="action", required=True, metavar="add|list")
    add = actions.add_parser("add", help="a new key for a producer (created if new)")
    add.add_argument("name", help="the producer: lower-case letters, digits and -; its prefix")
    deployment.add_arguments(add)
    add.set_defaults(run=add_key)
    listing = actions.add_parser("list", help="each producer and its number of keys")
    deployment.add_arguments(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object instead of text")
    listing.set_defaults(run=list_producers)


def add_key(args: argparse.Namespace, root: Path) -> int:
    try:
        requests.check_producer(args.name)
    except ValueError as err:
        raise UsageError(f"sluice producer add: {err}") from err
    target = deployment.resolve(args, root)
    secrets = target.client("secretsmanager")
    current = _read(target, secrets)
    key, digest = producers.new_key(args.name)
    secrets.put_secret_value(
        SecretId=target.producers_secret,
        SecretString=producers.with_key(current, args.name, digest),
    )
    print(f"producer {args.name}: new key (shown once, only its sha256 is kept):\n{key}")
    return 0


def list_producers(args: argparse.Namespace, root: Path) -> int:
    target = deployment.resolve(args, root)
    current = _read(target, target.client("secretsmanager"))
    counts: dict[str, int] = {}
    for name in producers.Producers.parse(current).by_key_sha256.values() if current else ():
        counts[name] = counts.get(name, 0) + 1
    if args.json:
        print(json.dumps({"producers": counts}, sort_keys=True))
    elif not counts:
        print("no producers yet: `sluice producer add NAME` makes the first")
    else:
        for name, count in sorted(counts.items()):
            print(f"{name}  {count} key{'s' if count > 1 else ''}")
    return 0


def _read(target: Deployment, secrets: Any) -> str | None:
    if not target.producers_secret:
        raise DeploymentError(
            f"deployment {target.name!r} has no HTTPS intake (no producers secret): deploy it, "
            "or restart the local stack with `sluice up`"
        )
    try:
        value = secrets.get_secret_value(SecretId=target.producers_secret)
    except secrets.exceptions.ResourceNotFoundException:
        return None  # Terraform creates the secret with no value: the first `add` puts one
    return str(value["SecretString"])
