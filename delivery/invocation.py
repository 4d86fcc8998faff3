"""Delivery invoked asynchronously with a staged window's event: by redrive, and by delivery
itself to continue a window near its deadline (DESIGN §4a rule 4a)."""

from __future__ import annotations

import json
from typing import Any, Final

from transform import clients

CONTINUATION_FIELD: Final = "sluice_continuation"
"""In a continuation's event: how many invocations the window has taken so far."""


class InvokeRefused(RuntimeError):
    """Lambda did not accept an asynchronous invocation of delivery."""


def invoke_delivery(function: str, event: dict[str, Any]) -> None:
    """Invoke delivery asynchronously (InvocationType Event); raise unless Lambda accepted it."""
    response = clients.lambda_().invoke(
        FunctionName=function, InvocationType="Event", Payload=json.dumps(event).encode()
    )
    if response["StatusCode"] != 202:
        raise InvokeRefused(f"{function} answered {response['StatusCode']} to an async invoke")
