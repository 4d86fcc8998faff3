"""Lambda entry point `transform.intake.handler.lambda_handler`: the HTTPS intake's API
(API Gateway HTTP API, payload format 2.0), routed on the event's `routeKey`.

- `POST /v1/files/{name+}`: the body is one file, landed at `<producer>/api/files/<dt>/<name>`.
- `POST /v1/events`: one JSON event or NDJSON of many, each checked against the payload schema
  for `<producer>/api/events/`, landed as one NDJSON file.
- `GET /v1/health`: 200 when the intake can land a file, 503 naming what is wrong.
- `GET /v1/files/{file_id}`: where one of the producer's files is now (`status`).
Every error is an RFC 9457 problem document. An `Idempotency-Key` makes a retried request land
nothing new and answer what the first answered (docs/intake.md).
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2, event_source
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from delivery.ledger import Ledger
from infrastructure import environment
from infrastructure.tunables import IntakeTunables, load_tunables, required_env
from transform import clients
from transform import payload_schemas as payload_schemas_module
from transform.intake import keys, problems, requests
from transform.intake.health import check_health
from transform.intake.landing import Landed, LandingError, land
from transform.intake.problems import Problem
from transform.intake.producers import Producers, RegistryError
from transform.intake.status import FileRecords
from transform.intake.throttle import Throttle
from transform.payload_schemas import PayloadSchemas

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=clients.TRACED_MODULES)

IDEMPOTENCY_HEADER: Final = "idempotency-key"
MAX_IDEMPOTENCY_KEY_CHARS: Final = 255


@dataclass(frozen=True)
class IntakeDeps:
    s3: S3Client
    landing_bucket: str
    tunables: IntakeTunables
    schemas: PayloadSchemas
    throttle: Throttle
    producers: Callable[[], Producers]
    """The registry, re-read from Secrets Manager at most every `secret_max_age_seconds`."""
    idempotency: IdempotencyConfig
    persistence: DynamoDBPersistenceLayer
    records: FileRecords


@functools.cache
def dependencies() -> IntakeDeps:
    """Built once per cold start; a bad tunable or missing variable fails here, loudly."""
    tunables = load_tunables()
    table = required_env(environment.IDEMPOTENCY_TABLE)
    secret = required_env(environment.PRODUCERS_SECRET)
    intake = tunables.intake

    def producers() -> Producers:
        value = parameters.get_secret(secret, max_age=intake.secret_max_age_seconds)
        return Producers.parse(str(value))

    return IntakeDeps(
        s3=clients.s3(),
        landing_bucket=required_env(environment.LANDING_BUCKET),
        tunables=intake,
        schemas=payload_schemas_module.load(tunables.processor.payload_schemas),
        throttle=Throttle(clients.dynamodb(), table),
        producers=producers,
        idempotency=IdempotencyConfig(
            event_key_jmespath="[producer, idempotency_key]",
            payload_validation_jmespath="request_sha256",
            expires_after_seconds=intake.idempotency_ttl_seconds,
        ),
        persistence=DynamoDBPersistenceLayer(table_name=table, boto3_client=clients.dynamodb()),
        records=FileRecords(
            dynamodb=clients.dynamodb(),
            idempotency_table=table,
            ledger=Ledger(
                clients.dynamodb(),
                required_env(environment.LEDGER_TABLE),
                tunables.delivery.ledger_ttl_seconds,
            ),
            archive_prefix=tunables.delivery.archive_prefix,
            file_extension=tunables.firehose.file_extension,
            ttl_seconds=tunables.forwarder.idempotency_ttl_seconds,
        ),
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@event_source(data_class=APIGatewayProxyEventV2)
def lambda_handler(event: APIGatewayProxyEventV2, context: LambdaContext) -> dict[str, Any]:
    route = event.route_key
    started = time.monotonic()
    try:
        status, body, headers = _route(route, event, context)
    except Problem as problem:
        status, headers = problem.status, {"Content-Type": problems.CONTENT_TYPE, **problem.headers}
        body = problem.body(instance=event.request_context.request_id)
        logger.info("request refused", route=route, status=status, problem=problem.kind)
    metrics.add_dimension(name="route", value=route)
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name=f"Status{status // 100}xx", unit=MetricUnit.Count, value=1)
    elapsed_ms = (time.monotonic() - started) * 1000
    metrics.add_metric(name="RequestLatency", unit=MetricUnit.Milliseconds, value=elapsed_ms)
    return {"statusCode": status, "headers": headers, "body": body}


def _route(
    route: str, event: APIGatewayProxyEventV2, context: LambdaContext
) -> tuple[int, str, dict[str, str]]:
    deps = dependencies()
    if route == requests.HEALTH_ROUTE:
        health = check_health(deps.s3, deps.landing_bucket, deps.producers)
        return (200 if health.ok else 503), json.dumps(health.as_dict()), _json_headers()
    if route not in LANDING_ROUTES and route != requests.STATUS_ROUTE:
        raise Problem(404, "no-such-route", "No such route", f"{route} is not a route of this API")
    try:
        producer = deps.producers().identify(event.headers.get("authorization"))
    except RegistryError as err:
        logger.exception("the producers secret is malformed")
        raise Problem(503, "unavailable", "Intake unavailable", "keys cannot be checked") from err
    logger.append_keys(producer=producer)
    if route == requests.STATUS_ROUTE:
        limit = deps.tunables.producer_requests_per_second["status"]
        deps.throttle.admit(producer, "status", limit)
        file_id = (event.path_parameters or {}).get("file_id", "")
        return 200, json.dumps(deps.records.status(producer, file_id)), _json_headers()
    route_name, land_request = LANDING_ROUTES[route]
    deps.throttle.admit(
        producer, route_name, deps.tunables.producer_requests_per_second[route_name]
    )
    request = _Request(producer, event, _body(event, deps.tunables.max_body_bytes))
    landed, first = _idempotently(deps, context, request, lambda: land_request(deps, request))
    headers = {**_json_headers(), "Location": f"/v1/files/{landed['file_id']}"}
    if not first:
        headers["Idempotent-Replayed"] = "true"
    return 201, json.dumps(landed), headers


class _Request(NamedTuple):
    producer: str
    event: APIGatewayProxyEventV2
    body: bytes


def _post_file(deps: IntakeDeps, request: _Request) -> Landed:
    name = requests.check_name((request.event.path_parameters or {}).get("name", ""))
    key = keys.file_key(request.producer, name, datetime.now(UTC))
    content_type = request.event.headers.get("content-type", "")
    return _land(deps, request, key, request.body, content_type)


def _post_events(deps: IntakeDeps, request: _Request) -> Landed:
    request_id = request.event.request_context.request_id
    key = keys.events_key(request.producer, request_id, datetime.now(UTC))
    events = requests.parse_events(
        request.body,
        request.event.headers.get("content-type", ""),
        key,
        deps.schemas,
        max_events=deps.tunables.max_events,
        max_errors=deps.tunables.max_errors_reported,
    )
    metrics.add_metric(name="EventsLanded", unit=MetricUnit.Count, value=events.count)
    return _land(deps, request, key, events.body, "application/x-ndjson")


def _land(deps: IntakeDeps, request: _Request, key: str, body: bytes, content_type: str) -> Landed:
    try:
        landed = land(
            deps.s3,
            deps.landing_bucket,
            key,
            body,
            content_type=content_type,
            metadata={
                "sluice-producer": request.producer,
                "sluice-request-id": request.event.request_context.request_id,
            },
        )
    except LandingError as err:
        logger.exception("landing refused the file", key=key)
        raise Problem(
            503, "unavailable", "Intake unavailable", "the file could not be landed; retry"
        ) from err
    deps.records.remember(request.producer, landed)
    metrics.add_metric(name="BytesLanded", unit=MetricUnit.Bytes, value=landed.size)
    logger.info("landed", key=key, file_id=landed.file_id, size=landed.size)
    return landed


def _idempotently(
    deps: IntakeDeps, context: LambdaContext, request: _Request, work: Callable[[], Landed]
) -> tuple[dict[str, Any], bool]:
    """Run `work` once per (producer, Idempotency-Key): the answer, and whether this request
    did the work. A retry gets the first answer and lands nothing; the same key with another
    request is 422, and one still running is 409."""
    key = request.event.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return work().as_dict(), True
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise problems.bad_request(
            "invalid-idempotency-key",
            "Invalid Idempotency-Key",
            f"an Idempotency-Key is 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters",
        )
    first: list[bool] = []

    def work_once(request: dict[str, Any]) -> dict[str, Any]:  # `request` names the key
        first.append(True)
        return work().as_dict()

    once = cast(
        "Callable[..., dict[str, Any]]",
        idempotent_function(
            data_keyword_argument="request",
            config=deps.idempotency,
            persistence_store=deps.persistence,
        )(work_once),
    )
    deps.idempotency.register_lambda_context(context)
    identity = {
        "producer": request.producer,
        "idempotency_key": key,
        "request_sha256": requests.request_digest(
            request.event.route_key, request.event.raw_path, request.body
        ),
    }
    try:
        answer = once(request=identity)
    except IdempotencyAlreadyInProgressError as err:
        raise Problem(
            409,
            "request-in-progress",
            "Request in progress",
            "a request with this Idempotency-Key is still being handled; retry for its answer",
            headers={"Retry-After": "1"},
        ) from err
    except IdempotencyValidationError as err:
        raise Problem(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "this Idempotency-Key was used for a different request",
        ) from err
    return answer, bool(first)


LANDING_ROUTES: Final[dict[str, tuple[str, Callable[[IntakeDeps, _Request], Landed]]]] = {
    requests.FILES_ROUTE: ("files", _post_file),
    requests.EVENTS_ROUTE: ("events", _post_events),
}
"""Route key → (its name in `producer_requests_per_second`, what lands its request)."""


def _body(event: APIGatewayProxyEventV2, limit: int) -> bytes:
    raw = event.body or ""
    body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode()
    requests.check_size(len(body), limit)
    return body


def _json_headers() -> dict[str, str]:
    return {"Content-Type": "application/json"}
