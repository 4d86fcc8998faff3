"""The least-privilege checker itself (tests/slow/least_privilege.py), on small policies."""

from __future__ import annotations

import json

from infrastructure.tunables import load_tunables
from tests.slow.least_privilege import OPERATIONS_FILE, call_shape, iam_actions, problems


def call(service: str, operation: str, *, version_id: bool = False, items: tuple = ()) -> dict:
    return {"service": service, "operation": operation, "version_id": version_id, "items": items}


def policy(*actions: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": list(actions)}]}


def test_operations_map_to_the_actions_iam_checks() -> None:
    assert iam_actions(call("s3", "GetObject", version_id=True)) == {"s3:GetObjectVersion"}
    assert iam_actions(call("s3", "HeadObject")) == {"s3:GetObject"}
    assert iam_actions(call("s3", "ListObjectsV2")) == {"s3:ListBucket"}
    assert iam_actions(call("dynamodb", "TransactWriteItems", items=("Put", "Update"))) == {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    }
    assert iam_actions(call("lambda", "Invoke")) == {"lambda:InvokeFunction"}
    assert iam_actions(call("firehose", "PutRecordBatch")) == {"firehose:PutRecordBatch"}
    assert iam_actions(call("sqs", "ChangeMessageVisibilityBatch")) == {
        "sqs:ChangeMessageVisibility"
    }


def test_a_missing_action_and_an_unneeded_one_are_both_reported() -> None:
    calls = {"processor": [call("s3", "GetObject", version_id=True)]}
    found = problems({"processor": policy("s3:GetObject", "s3:DeleteObject")}, calls)
    assert found == [
        "processor: needs s3:GetObjectVersion, which its policy does not allow",
        "processor: allows s3:DeleteObject, which it never needs",
        "processor: allows s3:GetObject, which it never needs",
    ]


def test_wildcards_match_but_are_reported_unless_justified() -> None:
    calls = {"processor": [call("s3", "GetObject", version_id=True)]}
    assert problems({"processor": policy("s3:Get*")}, calls) == [
        "processor: allows the wildcard s3:Get*"
    ]
    assert problems({"processor": policy("s3:GetObjectVersion", "logs:PutLogEvents")}, calls) == []


def test_the_listing_names_every_function_and_only_known_call_fields() -> None:
    listing = json.loads(OPERATIONS_FILE.read_text())
    assert set(listing) - {"_about"} == set(load_tunables().functions)
    for function, calls in listing.items():
        if function != "_about":
            for entry in calls:
                assert iam_actions(call_shape(entry)), (function, entry)
