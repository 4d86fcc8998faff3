"""Lambda's Invoke API on loopback, in front of the local Lambda runtime.

Redrive invokes delivery through boto3 (`lambda.invoke(InvocationType="Event")`), and operators'
tools will too; moto's Lambda cannot run a function without Docker, so the local stack answers
that call itself: `AWS_ENDPOINT_URL_LAMBDA=<server.endpoint>` in the functions' environment.

    POST /2015-03-31/functions/{FunctionName}/invocations
    X-Amz-Invocation-Type: Event | RequestResponse | DryRun

https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html — `FunctionName` is a name, a
partial ARN (`123456789012:function:name`) or a full ARN, with an optional `:qualifier`
(here any qualifier runs the one local version, as `live` does). `Event` queues an
asynchronous invocation (LambdaRuntime.invoke_async: retries, on-failure record) and answers
202; `RequestResponse` answers 200 with the function's result, or its error payload with
`X-Amz-Function-Error: Unhandled`; `DryRun` answers 204. An unknown function is
ResourceNotFoundException (404), a bad invocation type InvalidParameterValueException (400),
a payload that is not JSON InvalidRequestContentException (400), another path or method
UnknownOperationException — each as `{"Type": "User", "message": …}` with the code in
`x-amzn-ErrorType`, which is how botocore's rest-json parser finds it.

As the local Firehose does, every request must be SigV4-signed for `lambda` in the stack's
region (the signature is not checked): an unsigned client or one built for another service or
region fails here as it would in AWS.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from infrastructure.local.lambda_runtime import LambdaRuntime
from infrastructure.local.lambda_workers import FunctionError, RuntimeStoppedError

logger = logging.getLogger(__name__)

SERVICE: Final = "lambda"
_INVOKE_PATH = re.compile(r"/2015-03-31/functions/(?P<name>[^/]+)/invocations\Z")
_CREDENTIAL = re.compile(r"Credential=[^/\s,]+/\d{8}/(?P<region>[^/\s,]+)/(?P<service>[^/\s,]+)/")
_ARN = re.compile(
    r"(?:arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:)?(?:\d{12}:)?(?:function:)?"
    r"(?P<name>[a-zA-Z0-9_-]+)(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]+))?\Z"
)


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def function_name(identifier: str) -> str:
    """The function's name from any of the forms Invoke accepts."""
    match = _ARN.match(identifier)
    if match is None:
        raise _ApiError(
            400, "InvalidParameterValueException", f"invalid function name {identifier!r}"
        )
    return match["name"]


class LambdaApiServer:
    """Invoke on `host:port` (port 0: a free one), bound at once so that its endpoint can go
    into the functions' environment before the runtime exists; `start(runtime)` serves it."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runtime: LambdaRuntime | None = None
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.api = self  # type: ignore[attr-defined]  # the handler's way back to us
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def runtime(self) -> LambdaRuntime:
        if self._runtime is None:
            raise RuntimeError("the Lambda API is not started")
        return self._runtime

    def start(self, runtime: LambdaRuntime) -> LambdaApiServer:
        if self._thread is not None:
            raise RuntimeError("the Lambda API is already started")
        self._runtime = runtime
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="lambda-api",
            daemon=True,
        )
        self._thread.start()
        logger.info("local Lambda API on %s", self.endpoint)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def invoke(
        self, identifier: str, invocation_type: str, payload: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one Invoke call."""
        name = function_name(identifier)
        if name not in self.runtime.functions:
            arn = f"arn:aws:lambda:{self.runtime.region}:123456789012:function:{name}"
            raise _ApiError(404, "ResourceNotFoundException", f"Function not found: {arn}")
        if invocation_type not in {"Event", "RequestResponse", "DryRun"}:
            raise _ApiError(
                400,
                "InvalidParameterValueException",
                f"invalid invocation type {invocation_type!r}: Event, RequestResponse or DryRun",
            )
        if invocation_type == "DryRun":
            return 204, {}, b""
        try:
            event = json.loads(payload or b"{}")
        except ValueError as err:
            raise _ApiError(
                400, "InvalidRequestContentException", f"Could not parse request body: {err}"
            ) from err
        try:
            if invocation_type == "Event":
                request_id = self.runtime.invoke_async(name, event)
                return 202, {"x-amzn-RequestId": request_id}, b""
            result = self.runtime.invoke(name, event)
        except FunctionError as err:
            body = json.dumps(err.payload).encode()
            return 200, {"X-Amz-Function-Error": "Unhandled"}, body
        except RuntimeStoppedError as err:
            raise _ApiError(503, "ServiceException", "the local runtime is stopping") from err
        return 200, {"X-Amz-Executed-Version": "1"}, json.dumps(result).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def do_POST(self) -> None:
        api: LambdaApiServer = self.server.api  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length)
        try:
            _check_signature(self.headers.get("Authorization", ""), api.runtime.region)
            status, headers, body = api.invoke(
                _function_in(self.path),
                self.headers.get("X-Amz-Invocation-Type", "RequestResponse"),
                payload,
            )
        except _ApiError as err:
            status, headers = err.status, {"x-amzn-ErrorType": err.code}
            body = json.dumps({"Type": "User", "message": err.message}).encode()
        self.send_response(status)
        headers.setdefault("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.do_POST()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("lambda api: " + format, *args)


def _function_in(path: str) -> str:
    match = _INVOKE_PATH.match(urllib.parse.urlsplit(path).path)
    if match is None:
        raise _ApiError(404, "UnknownOperationException", f"no operation at {path}")
    return urllib.parse.unquote(match["name"])


def _check_signature(authorization: str, region: str) -> None:
    match = _CREDENTIAL.search(authorization)
    if match is None:
        raise _ApiError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    if match["service"] != SERVICE or match["region"] != region:
        raise _ApiError(
            403,
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region and service {SERVICE!r} in "
            f"{region!r}, not {match['service']!r} in {match['region']!r}.",
        )
