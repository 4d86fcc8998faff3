"""Test double of an SQS-triggered function whose partial batch response is invalid on a
message's first receive, in the way its body names; valid (and empty) afterwards."""

from __future__ import annotations

from typing import Any

from tests.integration.handlers import _log

KINDS = ("not-an-object", "not-a-list", "unknown-id", "empty-id", "null-id", "wrong-key")


def invalid(kind: str, message_id: str) -> Any:
    """An invalid partial batch response for a batch of the one message `message_id`."""
    return {
        "not-an-object": ["batchItemFailures", message_id],
        "not-a-list": {"batchItemFailures": message_id},
        "unknown-id": {"batchItemFailures": [{"itemIdentifier": "no-such-message-id"}]},
        "empty-id": {"batchItemFailures": [{"itemIdentifier": ""}]},
        "null-id": {"batchItemFailures": [{"itemIdentifier": None}]},
        "wrong-key": {"batchItemFailures": [{"messageId": message_id}]},
    }[kind]


def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    record = event["Records"][0]
    body = _log.sqs_body(record)
    count = _log.receive_count(record)
    _log.append(body["log"], {"messageId": record["messageId"], "receiveCount": count})
    if count == 1:
        return invalid(body["response"], record["messageId"])
    return {"batchItemFailures": []}
