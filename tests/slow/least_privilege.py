"""Least privilege, checked: the SDK operations each function really makes (recorded by the
local Lambda runtime in the end-to-end test, kept in `sdk_operations.json`) mapped to IAM
actions, against the policy Terraform gives that function's role.

Two directions (issue 5): every action a function needs is allowed by its policy, and its policy
allows nothing beyond what it needs — those actions, the ones the Lambda service performs with
the role on the function's behalf (`SERVICE_ACTIONS`), and permissions that change S3's
answers rather than allow a call (`PERMISSION_ONLY`), each with its reason. Calls the local run
does not exercise are in the listing with a `why` naming the code that makes them. Resources
are not compared here.

The mapping from an operation to its IAM action follows the Service Authorization Reference
(https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html):
mostly `<service>:<Operation>`, with S3's exceptions — a versioned read is
`s3:GetObjectVersion`, HeadObject is authorised as GetObject, ListObjectsV2 as `s3:ListBucket`,
ListObjectVersions as `s3:ListBucketVersions` — SQS's batch operations authorised as their single
ones, and DynamoDB's TransactWriteItems authorised per item as PutItem, UpdateItem, DeleteItem or
ConditionCheckItem.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

OPERATIONS_FILE: Final = Path(__file__).with_name("sdk_operations.json")

IAM_PREFIX: Final = {
    "s3": "s3",
    "dynamodb": "dynamodb",
    "firehose": "firehose",
    "sqs": "sqs",
    "secretsmanager": "secretsmanager",
    "lambda": "lambda",
    "kms": "kms",
    "sns": "sns",
    "cloudwatch": "cloudwatch",
}
TRANSACTION_ITEM_ACTIONS: Final = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
SERVICE_ACTIONS: Final[dict[str, dict[str, str]]] = {
    "*": {
        "logs:CreateLogStream": "Lambda writes the function's output to its log group",
        "logs:PutLogEvents": "Lambda writes the function's output to its log group",
        "xray:PutTraceSegments": "active tracing: Lambda and Powertools' tracer send segments",
        "xray:PutTelemetryRecords": "active tracing",
        "ec2:CreateNetworkInterface": "VPC only: Lambda attaches the function to the subnets",
        "ec2:DescribeNetworkInterfaces": "VPC only",
        "ec2:DeleteNetworkInterface": "VPC only",
        "ec2:AssignPrivateIpAddresses": "VPC only",
        "ec2:UnassignPrivateIpAddresses": "VPC only",
        "kms:Decrypt": "customer key only: reading encrypted objects, queues, tables, secrets",
        "kms:GenerateDataKey": "customer key only: writing encrypted objects and messages",
        "kms:GenerateDataKey*": "customer key only: writing encrypted objects and messages",
    },
    "forwarder": {
        "sqs:ReceiveMessage": "the event source mapping polls the ingest queue with the role",
        "sqs:DeleteMessage": "the mapping deletes what the function processed",
        "sqs:GetQueueAttributes": "the mapping reads the queue's attributes",
        "sqs:ChangeMessageVisibility": "the mapping returns failed messages",
    },
    "delivery": {
        "sqs:SendMessage": "Lambda sends the on-failure record to the delivery DLQ with the role",
    },
    "requeue": {
        "sqs:SendMessage": "Lambda sends the on-failure record to the requeue DLQ with the role",
    },
}
PERMISSION_ONLY: Final[dict[str, dict[str, str]]] = {
    # Not a call: without s3:ListBucket, S3 answers 403 for a key that does not exist, and the
    # code tells "gone" (quarantine, exclusion) from "denied" (retry) by 404 vs 403.
    "forwarder": {"s3:ListBucket": "a landing version deleted for good must answer 404"},
    "delivery": {"s3:ListBucket": "a ref's landing version deleted for good must answer 404"},
    # Not a call: a conditional PutObject with If-Match needs s3:GetObject too; the health probe
    # (transform/intake/health.py) writes nothing and must not be refused for want of it.
    "intake": {"s3:GetObject": "the health probe's conditional put (If-Match)"},
}


S3_ACTIONS: Final = {
    ("GetObject", False): "s3:GetObject",
    ("GetObject", True): "s3:GetObjectVersion",
    ("HeadObject", False): "s3:GetObject",
    ("HeadObject", True): "s3:GetObjectVersion",
    ("PutObjectTagging", False): "s3:PutObjectTagging",
    ("PutObjectTagging", True): "s3:PutObjectVersionTagging",
    ("ListObjectsV2", False): "s3:ListBucket",
    ("ListObjectVersions", False): "s3:ListBucketVersions",
}


SQS_BATCH_ACTIONS: Final = {
    "SendMessageBatch": "sqs:SendMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def iam_actions(call: Mapping[str, Any]) -> set[str]:
    """The IAM actions that authorise one recorded SDK call."""
    service, operation = call["service"], call["operation"]
    special = S3_ACTIONS.get((operation, bool(call.get("version_id")))) if service == "s3" else None
    if special is not None:
        return {special}
    if service == "dynamodb" and operation == "TransactWriteItems":
        return {TRANSACTION_ITEM_ACTIONS[kind] for kind in call.get("items", [])}
    if service == "sqs" and operation in SQS_BATCH_ACTIONS:
        return {SQS_BATCH_ACTIONS[operation]}
    if service == "lambda" and operation == "Invoke":
        return {"lambda:InvokeFunction"}
    return {f"{IAM_PREFIX[service]}:{operation}"}


def statements(policy: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = policy.get("Statement", [])
    return [found] if isinstance(found, dict) else list(found)


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def allowed_actions(policy: Mapping[str, Any]) -> set[str]:
    return {
        action
        for statement in statements(policy)
        if statement.get("Effect") == "Allow"
        for action in _listed(statement.get("Action", []))
    }


def allows(policy: Mapping[str, Any], action: str) -> bool:
    """Whether some Allow statement's actions match `action` (IAM's wildcards, any case)."""
    return any(
        fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in allowed_actions(policy)
    )


def problems(
    policies: Mapping[str, Mapping[str, Any]], calls: Mapping[str, Iterable[Mapping[str, Any]]]
) -> list[str]:
    """What breaks least privilege, as readable lines (empty: nothing)."""
    found: list[str] = []
    for function, policy in sorted(policies.items()):
        needed = {action for call in calls.get(function, []) for action in iam_actions(call)}
        for action in sorted(needed):
            if not allows(policy, action):
                found.append(f"{function}: needs {action}, which its policy does not allow")
        justified = (
            needed
            | set(SERVICE_ACTIONS["*"])
            | set(SERVICE_ACTIONS.get(function, {}))
            | set(PERMISSION_ONLY.get(function, {}))
        )
        for action in sorted(allowed_actions(policy)):
            if "*" in action.split(":", 1)[-1] and action not in justified:
                found.append(f"{function}: allows the wildcard {action}")
            elif action not in justified:
                found.append(f"{function}: allows {action}, which it never needs")
    return found


def call_shape(call: Mapping[str, Any]) -> dict[str, Any]:
    """What identifies a call for IAM (without the listing's `why`)."""
    return {key: call.get(key) for key in ("service", "operation", "version_id", "items")}


def recorded_operations(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """The runtime's `<function>.sdk.jsonl` files, as sorted distinct calls per function."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.glob("*.sdk.jsonl")):
        lines = {line for line in path.read_text().splitlines() if line}
        out[path.name.removesuffix(".sdk.jsonl")] = sorted(
            (json.loads(line) for line in lines), key=json.dumps
        )
    return out
