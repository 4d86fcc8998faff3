"""Lambda's Invoke API in front of the local runtime (infrastructure.local.lambdas.api), called
with boto3 as redrive calls it.

https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from infrastructure.local.lambdas.api import LambdaApiServer, function_name
from infrastructure.local.lambdas.runtime import LambdaRuntime
from tests.conftest import REGION
from tests.integration.handlers import _log
from tests.integration.runtime_support import function, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def api(start_runtime: Callable[..., LambdaRuntime]) -> Iterator[LambdaApiServer]:
    runtime = start_runtime(function("echo", "echo"), function("fails", "fails"), region=REGION)
    server = LambdaApiServer().start(runtime)
    yield server
    server.stop()


def client(endpoint: str, region: str = REGION, **config: Any) -> Any:
    return boto3.client(
        "lambda",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}, **config),
    )


@pytest.mark.parametrize(
    "identifier",
    [
        "delivery",
        "delivery:live",
        "123456789012:function:delivery",
        "arn:aws:lambda:eu-west-2:123456789012:function:delivery",
        "arn:aws:lambda:eu-west-2:123456789012:function:delivery:live",
    ],
)
def test_every_name_form_invoke_accepts_names_the_function(identifier: str) -> None:
    """ "You can append a version number or alias to any of the formats" (FunctionName)."""
    assert function_name(identifier) == "delivery"


def test_request_response_returns_the_result(api: LambdaApiServer) -> None:
    # WHEN a function is invoked synchronously by its alias
    response = client(api.endpoint).invoke(
        FunctionName="echo:live", Payload=json.dumps({"hello": "world"}).encode()
    )
    # THEN the answer is 200 with the handler's result, and no function error
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read())["event"] == {"hello": "world"}


def test_a_handler_exception_is_a_function_error_with_its_payload(
    api: LambdaApiServer, tmp_path: Path
) -> None:
    """ "If an error occurs, the response includes a FunctionError field (X-Amz-Function-Error
    header): Unhandled" — with the error object as the payload, still status 200."""
    response = client(api.endpoint).invoke(
        FunctionName="fails", Payload=json.dumps({"log": str(tmp_path / "log")}).encode()
    )
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(response["Payload"].read())["errorType"] == "DeliberateError"


def test_event_is_accepted_with_202_and_runs_asynchronously(
    api: LambdaApiServer, tmp_path: Path
) -> None:
    """InvocationType Event: "Lambda adds the event to a queue and returns a success response"
    — 202 — and runs it later (with the async retries: the failing function runs again)."""
    log = tmp_path / "log"
    response = client(api.endpoint).invoke(
        FunctionName="fails", InvocationType="Event", Payload=json.dumps({"log": str(log)}).encode()
    )
    assert response["StatusCode"] == 202
    assert wait_until(lambda: _log.read(log), what="the asynchronous invocation")


def test_dry_run_checks_the_function_without_running_it(
    api: LambdaApiServer, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    payload = json.dumps({"log": str(log)}).encode()
    response = client(api.endpoint).invoke(
        FunctionName="fails", InvocationType="DryRun", Payload=payload
    )
    assert response["StatusCode"] == 204
    assert api.runtime.async_idle()
    assert not log.exists()


@pytest.mark.parametrize(
    ("call", "code"),
    [
        ({"FunctionName": "nope"}, "ResourceNotFoundException"),
        ({"FunctionName": "echo", "Payload": b"{not json"}, "InvalidRequestContentException"),
    ],
)
def test_errors_come_back_with_aws_codes(
    api: LambdaApiServer, call: dict[str, Any], code: str
) -> None:
    with pytest.raises(ClientError) as raised:
        client(api.endpoint).invoke(**call)
    assert raised.value.response["Error"]["Code"] == code


def test_unsigned_or_wrongly_scoped_requests_are_refused(api: LambdaApiServer) -> None:
    """Requests are SigV4-signed for `lambda` in the stack's region, as AWS requires."""
    with pytest.raises(ClientError) as unsigned:
        client(api.endpoint, signature_version=UNSIGNED).invoke(FunctionName="echo")
    assert unsigned.value.response["Error"]["Code"] == "MissingAuthenticationTokenException"
    with pytest.raises(ClientError) as elsewhere:
        client(api.endpoint, region="us-east-1").invoke(FunctionName="echo")
    assert elsewhere.value.response["Error"]["Code"] == "InvalidSignatureException"
