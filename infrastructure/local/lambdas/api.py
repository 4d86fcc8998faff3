"""Lambda's Invoke API, and the operator's pause/resume operations, on loopback, in front of the
local Lambda runtime.

Redrive and `sluice pause|resume` reach it through boto3 (`AWS_ENDPOINT_URL_LAMBDA`), rest-json as
botocore speaks it. Spec: docs/local-stack.md, `lambdas/api.py`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import urllib.parse
import uuid
from email.message import Message
from typing import Any, Final

from infrastructure.local.lambdas.runtime import (
    EventSourceMapping,
    FunctionThrottledError,
    LambdaRuntime,
)
from infrastructure.local.lambdas.workers import FunctionError, RuntimeStoppedError
from infrastructure.local.loopback import ApiError, LoopbackServer, Reply, credential_scope
from infrastructure.names import LIVE_ALIAS

logger = logging.getLogger(__name__)

SERVICE: Final = "lambda"
_INVOKE_PATH = re.compile(r"/2015-03-31/functions/(?P<name>[^/]+)/invocations\Z")
_MAPPINGS_PATH = re.compile(r"/2015-03-31/event-source-mappings/?\Z")
_MAPPING_PATH = re.compile(r"/2015-03-31/event-source-mappings/(?P<uuid>[^/]+)\Z")
_CONCURRENCY_PATH = re.compile(r"/20(?:17-10-31|19-09-30)/functions/(?P<name>[^/]+)/concurrency\Z")
UPDATABLE_MAPPING_FIELDS: Final = frozenset({"Enabled"})
THROTTLE_REASON: Final = "ReservedFunctionConcurrentInvocationLimitExceeded"
METHODS: Final = frozenset({"GET", "POST", "PUT", "DELETE"})
_ARN = re.compile(
    r"(?:arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:)?(?:\d{12}:)?(?:function:)?"
    r"(?P<name>[a-zA-Z0-9_-]+)(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]+))?\Z"
)


def _body(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw or b"{}")
    except ValueError as err:
        raise ApiError(
            400, "InvalidRequestContentException", f"Could not parse request body: {err}"
        ) from err
    if not isinstance(parsed, dict):
        raise ApiError(400, "InvalidRequestContentException", "the request body is not an object")
    return parsed


def _integer(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError(
            400, "InvalidParameterValueException", f"{name} must be a number, not {text!r}"
        ) from None


def function_name(identifier: str) -> str:
    """The function's name from any of the forms Invoke accepts."""
    match = _ARN.match(identifier)
    if match is None:
        raise ApiError(
            400, "InvalidParameterValueException", f"invalid function name {identifier!r}"
        )
    return match["name"]


class LambdaApiServer:
    """Invoke on `host:port` (port 0: a free one), bound at once so that its endpoint can go
    into the functions' environment before the runtime exists; `start(runtime)` serves it."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runtime: LambdaRuntime | None = None
        self._httpd = LoopbackServer(
            self._route, name="lambda-api", host=host, port=port, methods=METHODS
        )

    @property
    def endpoint(self) -> str:
        return self._httpd.endpoint

    @property
    def runtime(self) -> LambdaRuntime:
        if self._runtime is None:
            raise RuntimeError("the Lambda API is not started")
        return self._runtime

    def start(self, runtime: LambdaRuntime) -> LambdaApiServer:
        if self._runtime is not None:
            raise RuntimeError("the Lambda API is already started")
        self._runtime = runtime
        self._httpd.start()
        logger.info("local Lambda API on %s", self.endpoint)
        return self

    def stop(self) -> None:
        self._httpd.stop()

    def _route(self, method: str, path: str, headers: Message, body: bytes) -> Reply:
        """Every request is signed for `lambda` in the runtime's region; errors are rest-json."""
        try:
            _check_signature(headers.get("Authorization", ""), self.runtime.region)
            reply = self.handle(method, path, headers, body)
        except ApiError as err:
            reply = err.rest_json()
        except ValueError as err:  # the runtime refused a value the checks let through
            reply = ApiError(400, "InvalidParameterValueException", str(err)).rest_json()
        return dataclasses.replace(
            reply, headers={"x-amzn-RequestId": str(uuid.uuid4()), **reply.headers}
        )

    def handle(self, method: str, path: str, headers: Message, body: bytes) -> Reply:
        """The reply to one request: the operation its method and path name."""
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
            return Reply.json(200, self.list_event_source_mappings(query))
        answer: Reply | None = None
        if match := _MAPPING_PATH.match(route):
            answer = self._mapping_operation(method, urllib.parse.unquote(match["uuid"]), body)
        elif match := _CONCURRENCY_PATH.match(route):
            answer = self._concurrency_operation(
                method, route, urllib.parse.unquote(match["name"]), body
            )
        if answer is None:
            raise ApiError(404, "UnknownOperationException", f"no operation at {method} {path}")
        return answer

    def _mapping_operation(self, method: str, uuid_: str, body: bytes) -> Reply | None:
        if method == "GET":
            return Reply.json(200, self._mapping(uuid_).configuration())
        if method == "PUT":
            return Reply.json(202, self.update_event_source_mapping(uuid_, _body(body)))
        return None

    def _concurrency_operation(
        self, method: str, route: str, identifier: str, body: bytes
    ) -> Reply | None:
        """Put and Delete are at /2017-10-31/, Get at /2019-09-30/ (botocore's model)."""
        version = route.split("/", 2)[1]
        if (method, version) == ("PUT", "2017-10-31"):
            return Reply.json(
                200, self.put_function_concurrency(self._function(identifier), _body(body))
            )
        if (method, version) == ("GET", "2019-09-30"):
            reserved = self.runtime.function_concurrency(self._function(identifier))
            return Reply.json(
                200, {} if reserved is None else {"ReservedConcurrentExecutions": reserved}
            )
        if (method, version) == ("DELETE", "2017-10-31"):
            self.runtime.delete_function_concurrency(self._function(identifier))
            return Reply(204)
        return None

    # ------------------------------------------------------------------ event source mappings

    def list_event_source_mappings(self, query: dict[str, str]) -> dict[str, Any]:
        """Filtered by FunctionName (its name; a qualifier, when given, must be `live`, the one
        local alias, or `$LATEST`) and EventSourceArn; paged by Marker and MaxItems."""
        mappings = self.runtime.event_source_mappings()
        if "FunctionName" in query:
            wanted = _ARN.match(query["FunctionName"])
            if wanted is None:
                raise ApiError(
                    400,
                    "InvalidParameterValueException",
                    f"invalid function name {query['FunctionName']!r}",
                )
            if wanted["qualifier"] not in {None, LIVE_ALIAS, "$LATEST"}:
                mappings = []
            mappings = [m for m in mappings if m.function == wanted["name"]]
        if "EventSourceArn" in query:
            mappings = [m for m in mappings if m.event_source_arn == query["EventSourceArn"]]
        start = _integer(query.get("Marker", "0"), "Marker")
        size = _integer(query.get("MaxItems", "100"), "MaxItems")
        if not 1 <= size <= 10_000:
            raise ApiError(400, "InvalidParameterValueException", "MaxItems must be 1-10000")
        page = mappings[start : start + size]
        answer: dict[str, Any] = {"EventSourceMappings": [m.configuration() for m in page]}
        if start + size < len(mappings):
            answer["NextMarker"] = str(start + size)
        return answer

    def update_event_source_mapping(self, uuid_: str, request: dict[str, Any]) -> dict[str, Any]:
        mapping = self._mapping(uuid_)
        unsupported = sorted(set(request) - UPDATABLE_MAPPING_FIELDS)
        if unsupported:
            raise ApiError(
                400,
                "InvalidParameterValueException",
                f"the local event source mapping can only be enabled or disabled (Enabled); "
                f"{', '.join(unsupported)} cannot be changed here: it comes from tunables.json",
            )
        if "Enabled" in request:
            if not isinstance(request["Enabled"], bool):
                raise ApiError(
                    400, "InvalidParameterValueException", "Enabled must be true or false"
                )
            mapping.set_enabled(request["Enabled"])
        return mapping.configuration()

    def _mapping(self, uuid_: str) -> EventSourceMapping:
        for mapping in self.runtime.event_source_mappings():
            if mapping.uuid == uuid_:
                return mapping
        raise ApiError(
            404,
            "ResourceNotFoundException",
            f"The resource you requested does not exist. (Event source mapping {uuid_})",
        )

    # ------------------------------------------------------------------ concurrency

    def put_function_concurrency(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        reserved = request.get("ReservedConcurrentExecutions")
        if isinstance(reserved, bool) or not isinstance(reserved, int) or reserved < 0:
            raise ApiError(
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
            raise ApiError(404, "ResourceNotFoundException", f"Function not found: {arn}")
        return name

    # ------------------------------------------------------------------ invoke

    def invoke(self, identifier: str, invocation_type: str, payload: bytes) -> Reply:
        """The reply to one Invoke call."""
        name = self._function(identifier)
        if invocation_type not in {"Event", "RequestResponse", "DryRun"}:
            raise ApiError(
                400,
                "InvalidParameterValueException",
                f"invalid invocation type {invocation_type!r}: Event, RequestResponse or DryRun",
            )
        if invocation_type == "DryRun":
            return Reply(204)
        try:
            event = json.loads(payload or b"{}")
        except ValueError as err:
            raise ApiError(
                400, "InvalidRequestContentException", f"Could not parse request body: {err}"
            ) from err
        try:
            if invocation_type == "Event":
                request_id = self.runtime.invoke_async(name, event)
                return Reply(202, headers={"x-amzn-RequestId": request_id})
            result = self.runtime.invoke(name, event)
        except FunctionThrottledError as err:
            raise ApiError(
                429, "TooManyRequestsException", "Rate Exceeded.", reason=THROTTLE_REASON
            ) from err
        except FunctionError as err:
            body = json.dumps(err.payload).encode()
            return Reply(200, body, {"X-Amz-Function-Error": "Unhandled"})
        except RuntimeStoppedError as err:
            raise ApiError(503, "ServiceException", "the local runtime is stopping") from err
        return Reply(200, json.dumps(result).encode(), {"X-Amz-Executed-Version": "1"})


def _check_signature(authorization: str, region: str) -> None:
    scope = credential_scope(authorization)
    if scope is None:
        raise ApiError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    if scope.service != SERVICE or scope.region != region:
        raise ApiError(
            403,
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region and service {SERVICE!r} in "
            f"{region!r}, not {scope.service!r} in {scope.region!r}.",
        )
