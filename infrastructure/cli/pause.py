"""`sluice pause|resume forwarder|delivery`: stop and restart a stage of the pipeline, nothing lost.

The same code runs against AWS (`--env ENV`) and the local stack (`--local`, whose Lambda API
serves these operations: infrastructure/local/lambdas/api.py), through boto3's Lambda client:

- forwarder: its event source mapping from the ingest queue disabled or enabled
  (ListEventSourceMappings, UpdateEventSourceMapping `Enabled`), then its state once settled.
  Messages wait in the ingest queue meanwhile (and expire after its retention, 4 days).
- delivery: reserved concurrency 0 (PutFunctionConcurrency) pauses it; resume restores what
  Terraform configures: `function_overrides.delivery.reserved_concurrency` (lambda.tf's
  `reserved_concurrent_executions`, read from the Terraform state), or, when none is set, no
  reservation (DeleteFunctionConcurrency). tunables.json has no reserved concurrency (its schema
  allows none), so the local stack reserves none. While paused, S3's asynchronous events wait in
  Lambda's queue; those older than the maximum event age go to the delivery DLQ, from which
  `sluice redrive` recovers them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from infrastructure.cli import deployment
from infrastructure.cli.deployment import Deployment
from infrastructure.cli.errors import DeploymentError
from infrastructure.names import LIVE_ALIAS
from infrastructure.tunables import load_tunables

FUNCTIONS: Final = ("forwarder", "delivery")
SETTLED_STATES: Final = {True: "Enabled", False: "Disabled"}
WAIT_SECONDS: Final = 60.0
POLL_SECONDS: Final = 0.5
DELIVERY_RESOURCE: Final = 'aws_lambda_function.this["delivery"]'


def register(commands: Any) -> None:
    for verb, run, summary in (
        ("pause", pause, "stop a stage taking work; what arrives meanwhile waits"),
        ("resume", resume, "let a paused stage take work again"),
    ):
        command = commands.add_parser(
            verb,
            help=f"{summary} (forwarder | delivery)",
            description=f"{summary.capitalize()}. forwarder: the ingest queue's event source "
            "mapping disabled/enabled (messages wait in the queue, 4 days' retention). delivery: "
            "reserved concurrency 0, or back to what Terraform configures (events wait in "
            "Lambda's async queue; those older than the maximum event age go to the delivery "
            "DLQ, from which `sluice redrive` recovers them).",
        )
        command.add_argument("function", choices=FUNCTIONS)
        deployment.add_arguments(command)
        command.add_argument(
            "--wait",
            type=float,
            default=WAIT_SECONDS,
            help="seconds to wait for the forwarder's mapping to settle, batches in flight "
            f"finishing (default {WAIT_SECONDS:.0f}; 0: do not wait)",
        )
        command.add_argument("--json", action="store_true", help="one JSON object instead of text")
        command.set_defaults(run=run)


def pause(args: argparse.Namespace, root: Path) -> int:
    return _run(args, root, paused=True)


def resume(args: argparse.Namespace, root: Path) -> int:
    return _run(args, root, paused=False)


def _run(args: argparse.Namespace, root: Path, *, paused: bool) -> int:
    verb = "pause" if paused else "resume"
    target = deployment.resolve(args, root)
    try:
        if args.function == "forwarder":
            report = _forwarder(target, enabled=not paused, wait=args.wait)
        else:
            report = _delivery(target, root, paused=paused)
    except (ClientError, BotoCoreError) as err:
        print(f"sluice {verb} {args.function}: {err}", file=sys.stderr)
        return 1
    report = {"deployment": target.name, "action": verb, **report}
    if args.json:
        print(json.dumps(report))
    else:
        print(_text(report))
    return 0


# ---------------------------------------------------------------------- forwarder


def ingest_mappings(target: Deployment, client: Any) -> list[dict[str, Any]]:
    """The forwarder's event source mappings from the ingest queue (on the function or its
    `live` alias, which is what Terraform maps)."""
    forwarder = target.function("forwarder")
    queue = target.ingest_queue_url.rstrip("/").rsplit("/", 1)[-1]
    found: dict[str, dict[str, Any]] = {}
    paginator = client.get_paginator("list_event_source_mappings")
    for name in (forwarder, f"{forwarder}:{LIVE_ALIAS}"):
        for page in paginator.paginate(FunctionName=name):
            for mapping in page.get("EventSourceMappings", []):
                if mapping.get("EventSourceArn", "").rsplit(":", 1)[-1] == queue:
                    found[mapping["UUID"]] = mapping
    if not found:
        raise DeploymentError(
            f"deployment {target.name!r} has no event source mapping from the ingest queue "
            f"{queue!r} to {forwarder!r}"
        )
    return list(found.values())


def _forwarder(target: Deployment, *, enabled: bool, wait: float) -> dict[str, Any]:
    client = target.client("lambda")
    settled = SETTLED_STATES[enabled]
    states = {}
    for mapping in ingest_mappings(target, client):
        uuid = mapping["UUID"]
        if mapping.get("State") != settled:
            client.update_event_source_mapping(UUID=uuid, Enabled=enabled)
        deadline = time.monotonic() + wait
        while True:
            state = client.get_event_source_mapping(UUID=uuid)["State"]
            if state == settled or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
        states[uuid] = state
    ingest = load_tunables().ingest
    days = ingest.queue_retention_seconds / 86_400
    warning = (
        None
        if enabled
        else f"the forwarder is paused: new files' messages wait in the ingest queue, which "
        f"keeps them {days:g} days (ingest.queue_retention_seconds); resume before then"
    )
    return {
        "function": "forwarder",
        "mappings": [{"uuid": uuid, "state": state} for uuid, state in states.items()],
        "settled": all(state == settled for state in states.values()),
        "warning": warning,
    }


# ---------------------------------------------------------------------- delivery


def _delivery(target: Deployment, root: Path, *, paused: bool) -> dict[str, Any]:
    client = target.client("lambda")
    name = target.function("delivery")
    if paused:
        client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    else:
        configured = configured_concurrency(target, root)
        if configured is None:
            client.delete_function_concurrency(FunctionName=name)
        else:
            client.put_function_concurrency(
                FunctionName=name, ReservedConcurrentExecutions=configured
            )
    reserved = client.get_function_concurrency(FunctionName=name).get(
        "ReservedConcurrentExecutions"
    )
    age = load_tunables().delivery.async_max_event_age_seconds
    warning = (
        f"delivery is paused (reserved concurrency 0): S3's asynchronous events wait in "
        f"Lambda's queue, retried while throttled; those older than the maximum event age "
        f"({age} s, delivery.async_max_event_age_seconds) go to the delivery DLQ, from which "
        f"`sluice redrive` recovers them"
        if paused
        else None
    )
    return {"function": "delivery", "reserved_concurrency": reserved, "warning": warning}


def configured_concurrency(target: Deployment, root: Path) -> int | None:
    """Delivery's reserved concurrency as Terraform configures it; None: unreserved."""
    if target.endpoint_url is not None:
        return None  # the local stack provisions from tunables.json, which reserves none
    state = deployment.terraform_json(root, target.name, "show")
    return reserved_in_state(state, target.name)


def reserved_in_state(state: dict[str, Any], environment: str) -> int | None:
    """`reserved_concurrent_executions` of delivery in `terraform show -json`; -1 is none."""
    resources = state.get("values", {}).get("root_module", {}).get("resources", [])
    for resource in resources:
        if resource.get("address") == DELIVERY_RESOURCE:
            value = resource.get("values", {}).get("reserved_concurrent_executions", -1)
            return None if value is None or int(value) < 0 else int(value)
    raise DeploymentError(
        f"the Terraform state of {environment!r} has no {DELIVERY_RESOURCE}: is it deployed?"
    )


# ---------------------------------------------------------------------- output


def _text(report: dict[str, Any]) -> str:
    where = f"({report['deployment']})"
    if report["function"] == "forwarder":
        states = ", ".join(f"{m['uuid']} {m['state']}" for m in report["mappings"])
        line = f"forwarder {report['action']}d {where}: ingest event source mapping {states}"
        if not report["settled"]:
            line += " (batches still in flight: it settles once they finish)"
    else:
        reserved = report["reserved_concurrency"]
        shown = "unreserved" if reserved is None else f"reserved concurrency {reserved}"
        line = f"delivery {report['action']}d {where}: {shown}"
    if report.get("warning"):
        line += f"\nwarning: {report['warning']}"
    return line
