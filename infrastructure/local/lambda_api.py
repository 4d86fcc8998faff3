"""Lambda's Invoke API, and the operator's pause/resume operations, on loopback, in front of the
local Lambda runtime.

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

Pausing and resuming (`sluice pause|resume`, infrastructure/cli/pause.py), with the real paths
and shapes (botocore's service model, lambda 2015-03-31):

    GET    /2015-03-31/event-source-mappings?FunctionName=&EventSourceArn=&Marker=&MaxItems=
    GET    /2015-03-31/event-source-mappings/{UUID}
    PUT    /2015-03-31/event-source-mappings/{UUID}     {"Enabled": bool} -> 202
    PUT    /2017-10-31/functions/{FunctionName}/concurrency {"ReservedConcurrentExecutions": n}
    GET    /2019-09-30/functions/{FunctionName}/concurrency
    DELETE /2017-10-31/functions/{FunctionName}/concurrency                 -> 204

The mappings are the runtime's `SqsEventSource`s (`EventSourceMappingConfiguration` fields:
UUID, BatchSize, MaximumBatchingWindowInSeconds, EventSourceArn, FunctionArn, LastModified,
State, StateTransitionReason, FunctionResponseTypes, ScalingConfig). UpdateEventSourceMapping
changes `Enabled` only: any other field is refused with InvalidParameterValueException naming it
(the local mapping's settings come from the tunables). A function whose reserved concurrency is
0 answers a synchronous Invoke with 429 TooManyRequestsException (Reason
`ReservedFunctionConcurrentInvocationLimitExceeded`), as Lambda does; `Event` invocations are
still accepted (202) and wait, throttled, in the function's queue (lambda_runtime.py).

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

from infrastructure.local.lambda_runtime import (
    ALIAS,
    EventSourceMapping,
    FunctionThrottledError,
    LambdaRuntime,
)
from infrastructure.local.lambda_workers import FunctionError, RuntimeStoppedError

logger = logging.getLogger(__name__)

SERVICE: Final = "lambda"
_INVOKE_PATH = re.compile(r"/2015-03-31/functions/(?P<name>[^/]+)/invocations\Z")
_MAPPINGS_PATH = re.compile(r"/2015-03-31/event-source-mappings/?\Z")
_MAPPING_PATH = re.compile(r"/2015-03-31/event-source-mappings/(?P<uuid>[^/]+)\Z")
_CONCURRENCY_PATH = re.compile(r"/20(?:17-10-31|19-09-30)/functions/(?P<name>[^/]+)/concurrency\Z")
UPDATABLE_MAPPING_FIELDS: Final = frozenset({"Enabled"})
THROTTLE_REASON: Final = "ReservedFunctionConcurrentInvocationLimitExceeded"
_CREDENTIAL = re.compile(r"Credential=[^/\s,]+/\d{8}/(?P<region>[^/\s,]+)/(?P<service>[^/\s,]+)/")
_ARN = re.compile(
    r"(?:arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:)?(?:\d{12}:)?(?:function:)?"
    r"(?P<name>[a-zA-Z0-9_-]+)(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]+))?\Z"
)


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason

    def body(self) -> bytes:
        error: dict[str, str] = {"Type": "User", "message": self.message}
        if self.reason is not None:
            error["Reason"] = self.reason
        return json.dumps(error).encode()


def _json(status: int, answer: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {}, json.dumps(answer).encode()


def _body(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw or b"{}")
    except ValueError as err:
        raise _ApiError(
            400, "InvalidRequestContentException", f"Could not parse request body: {err}"
        ) from err
    if not isinstance(parsed, dict):
        raise _ApiError(400, "InvalidRequestContentException", "the request body is not an object")
    return parsed


def _integer(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _ApiError(
            400, "InvalidParameterValueException", f"{name} must be a number, not {text!r}"
        ) from None


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

    def handle(
        self, method: str, path: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request: the operation its method and path name."""
        parts = urllib.parse.urlsplit(path)
        route = parts.path
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        if method == "POST" and (match := _INVOKE_PATH.match(route)):
            return self.invoke(
                urllib.parse.unquote(match["name"]),
                headers.get("X-Amz-Invocation-Type", "RequestResponse"),
                body,
            )
        if method == "GET" and _MAPPINGS_PATH.match(route):
            return _json(200, self.list_event_source_mappings(query))
        answer: tuple[int, dict[str, str], bytes] | None = None
        if match := _MAPPING_PATH.match(route):
            answer = self._mapping_operation(method, urllib.parse.unquote(match["uuid"]), body)
        elif match := _CONCURRENCY_PATH.match(route):
            answer = self._concurrency_operation(
                method, route, urllib.parse.unquote(match["name"]), body
            )
        if answer is None:
            raise _ApiError(404, "UnknownOperationException", f"no operation at {method} {path}")
        return answer

    def _mapping_operation(
        self, method: str, uuid_: str, body: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        if method == "GET":
            return _json(200, self._mapping(uuid_).configuration())
        if method == "PUT":
            return _json(202, self.update_event_source_mapping(uuid_, _body(body)))
        return None

    def _concurrency_operation(
        self, method: str, route: str, identifier: str, body: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        """Put and Delete are at /2017-10-31/, Get at /2019-09-30/ (botocore's model)."""
        version = route.split("/", 2)[1]
        if (method, version) == ("PUT", "2017-10-31"):
            return _json(
                200, self.put_function_concurrency(self._function(identifier), _body(body))
            )
        if (method, version) == ("GET", "2019-09-30"):
            reserved = self.runtime.function_concurrency(self._function(identifier))
            return _json(
                200, {} if reserved is None else {"ReservedConcurrentExecutions": reserved}
            )
        if (method, version) == ("DELETE", "2017-10-31"):
            self.runtime.delete_function_concurrency(self._function(identifier))
            return 204, {}, b""
        return None

    # ------------------------------------------------------------------ event source mappings

    def list_event_source_mappings(self, query: dict[str, str]) -> dict[str, Any]:
        """Filtered by FunctionName (its name; a qualifier, when given, must be `live`, the one
        local alias, or `$LATEST`) and EventSourceArn; paged by Marker and MaxItems."""
        mappings = self.runtime.event_source_mappings()
        if "FunctionName" in query:
            wanted = _ARN.match(query["FunctionName"])
            if wanted is None:
                raise _ApiError(
                    400,
                    "InvalidParameterValueException",
                    f"invalid function name {query['FunctionName']!r}",
                )
            if wanted["qualifier"] not in {None, ALIAS, "$LATEST"}:
                mappings = []
            mappings = [m for m in mappings if m.function == wanted["name"]]
        if "EventSourceArn" in query:
            mappings = [m for m in mappings if m.event_source_arn == query["EventSourceArn"]]
        start = _integer(query.get("Marker", "0"), "Marker")
        size = _integer(query.get("MaxItems", "100"), "MaxItems")
        if not 1 <= size <= 10_000:
            raise _ApiError(400, "InvalidParameterValueException", "MaxItems must be 1-10000")
        page = mappings[start : start + size]
        answer: dict[str, Any] = {"EventSourceMappings": [m.configuration() for m in page]}
        if start + size < len(mappings):
            answer["NextMarker"] = str(start + size)
        return answer

    def update_event_source_mapping(self, uuid_: str, request: dict[str, Any]) -> dict[str, Any]:
        mapping = self._mapping(uuid_)
        unsupported = sorted(set(request) - UPDATABLE_MAPPING_FIELDS)
        if unsupported:
            raise _ApiError(
                400,
                "InvalidParameterValueException",
                f"the local event source mapping can only be enabled or disabled (Enabled); "
                f"{', '.join(unsupported)} cannot be changed here: it comes from tunables.json",
            )
        if "Enabled" in request:
            if not isinstance(request["Enabled"], bool):
                raise _ApiError(
                    400, "InvalidParameterValueException", "Enabled must be true or false"
                )
            mapping.set_enabled(request["Enabled"])
        return mapping.configuration()

    def _mapping(self, uuid_: str) -> EventSourceMapping:
        for mapping in self.runtime.event_source_mappings():
            if mapping.uuid == uuid_:
                return mapping
        raise _ApiError(
            404,
            "ResourceNotFoundException",
            f"The resource you requested does not exist. (Event source mapping {uuid_})",
        )

    # ------------------------------------------------------------------ concurrency

    def put_function_concurrency(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        reserved = request.get("ReservedConcurrentExecutions")
        if isinstance(reserved, bool) or not isinstance(reserved, int) or reserved < 0:
            raise _ApiError(
                400,
                "InvalidParameterValueException",
                f"ReservedConcurrentExecutions must be an integer of at least 0, not {reserved!r}",
            )
        self.runtime.put_function_concurrency(name, reserved)
        return {"ReservedConcurrentExecutions": reserved}

    def _function(self, identifier: str) -> str:
        name = function_name(identifier)
        if name not in self.runtime.functions:
            arn = f"arn:aws:lambda:{self.runtime.region}:123456789012:function:{name}"
            raise _ApiError(404, "ResourceNotFoundException", f"Function not found: {arn}")
        return name

    # ------------------------------------------------------------------ invoke

    def invoke(
        self, identifier: str, invocation_type: str, payload: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one Invoke call."""
        name = self._function(identifier)
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
        except FunctionThrottledError as err:
            raise _ApiError(
                429, "TooManyRequestsException", "Rate Exceeded.", reason=THROTTLE_REASON
            ) from err
        except FunctionError as err:
            body = json.dumps(err.payload).encode()
            return 200, {"X-Amz-Function-Error": "Unhandled"}, body
        except RuntimeStoppedError as err:
            raise _ApiError(503, "ServiceException", "the local runtime is stopping") from err
        return 200, {"X-Amz-Executed-Version": "1"}, json.dumps(result).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def _serve(self, method: str) -> None:
        api: LambdaApiServer = self.server.api  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length)
        try:
            _check_signature(self.headers.get("Authorization", ""), api.runtime.region)
            status, headers, body = api.handle(method, self.path, self.headers, payload)
        except _ApiError as err:
            status, headers, body = err.status, {"x-amzn-ErrorType": err.code}, err.body()
        except ValueError as err:  # the runtime refused a value the checks above let through
            failed = _ApiError(400, "InvalidParameterValueException", str(err))
            status, headers, body = failed.status, {"x-amzn-ErrorType": failed.code}, failed.body()
        self.send_response(status)
        headers.setdefault("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self._serve("POST")

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("lambda api: " + format, *args)


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
