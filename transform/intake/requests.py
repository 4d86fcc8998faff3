"""What a producer sent, checked: file names, producers, event bodies (docs/intake.md); where
it lands is transform/intake/keys.py.

Each check collects every fault it finds (up to a limit), so a producer fixes a request once.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from transform.intake.problems import Problem, bad_request, too_large
from transform.payload_schemas import PayloadSchema, PayloadSchemaError, PayloadSchemas

FILES_ROUTE: Final = "POST /v1/files/{name+}"
EVENTS_ROUTE: Final = "POST /v1/events"
HEALTH_ROUTE: Final = "GET /v1/health"
STATUS_ROUTE: Final = "GET /v1/files/{file_id}"
ROUTES: Final = (FILES_ROUTE, EVENTS_ROUTE, HEALTH_ROUTE, STATUS_ROUTE)
"""Every route the intake serves, as API Gateway route keys: what Terraform deploys
(apigateway.tf), the local stack serves and docs/intake-openapi.json documents."""
MAX_NAME_BYTES: Final = 512
"""Of a file's name; with `<producer>/api/files/<dt>/` in front it stays under S3's 1,024."""
PRODUCER_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
NDJSON_TYPES: Final = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)
JSON_TYPE: Final = "application/json"
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def check_name(name: str) -> str:
    """`name` if it can be a key's last part under the producer's prefix; else a 400 naming
    every fault (a path that climbs out, an empty part, control characters, too long)."""
    errors = []
    if not name:
        errors.append("the name is empty")
    if len(name.encode()) > MAX_NAME_BYTES:
        errors.append(f"the name is {len(name.encode())} bytes of UTF-8; at most {MAX_NAME_BYTES}")
    if _CONTROL.search(name):
        errors.append("the name holds a control character")
    if "\\" in name:
        errors.append("the name holds a backslash; use / between folders")
    parts = name.split("/")
    if name and any(part == "" for part in parts):
        errors.append("the name has an empty folder (a leading, trailing or double /)")
    if any(part in {".", ".."} for part in parts):
        errors.append("the name has a . or .. folder")
    if errors:
        raise bad_request(
            "invalid-name",
            "Invalid file name",
            f"{name[:100]!r} cannot be a file name: {errors[0]}",
            [{"where": "path", "error": error} for error in errors],
        )
    return name


def check_size(size: int, limit: int) -> None:
    if size > limit:
        raise too_large(size, limit)


@dataclass(frozen=True)
class Events:
    body: bytes
    """The events as NDJSON: one compact JSON object a line, in the order sent."""
    count: int


def parse_events(
    body: bytes,
    content_type: str,
    key: str,
    schemas: PayloadSchemas,
    *,
    max_events: int,
    max_errors: int,
) -> Events:
    """One JSON event (`application/json`) or NDJSON of many, each an object that satisfies the
    payload schema for `key` when a rule names one; a 400 listing every fault (up to
    `max_errors`) otherwise."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == JSON_TYPE:
        lines = [body]
    elif media in NDJSON_TYPES:
        lines = body.split(b"\n")
    else:
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"events are {JSON_TYPE} (one) or application/x-ndjson (many), not {media or 'none'}",
        )
    rule = schemas.for_key(key)
    errors: list[dict[str, Any]] = []
    faults = 0
    out: list[bytes] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if len(out) + faults >= max_events:
            raise Problem(
                413,
                "too-many-events",
                "Too many events",
                f"more than {max_events} events in one request (intake.max_events)",
            )
        value, fault = _event(line, number, rule)
        if fault is None:
            out.append(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
            continue
        faults += 1
        if len(errors) < max_errors:
            errors.append({"where": f"event {number}", "error": fault})
    if faults:
        shown = "" if faults == len(errors) else f" (the first {len(errors)} listed)"
        raise bad_request(
            "invalid-events",
            "Events do not match their schema",
            f"{faults} of {faults + len(out)} events are invalid{shown}; nothing was landed",
            errors,
        )
    if not out:
        raise bad_request("no-events", "No events", "the body holds no event")
    return Events(body=b"\n".join(out) + b"\n", count=len(out))


def _event(line: bytes, number: int, rule: PayloadSchema | None) -> tuple[Any, str | None]:
    """The event parsed, and what is wrong with it (None when nothing is)."""
    try:
        value = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"not JSON: {err}"
    if not isinstance(value, dict):
        return None, f"an event is a JSON object, not {type(value).__name__}"
    if rule is not None:
        try:
            rule.check_parsed(value, where=f"event {number}")
        except PayloadSchemaError as err:
            return None, str(err)
    return value, None


def request_digest(route: str, path: str, body: bytes) -> str:
    """What makes two requests the same request, for an Idempotency-Key: route, path, body."""
    digest = hashlib.sha256()
    for part in (route.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def check_producer(name: str) -> str:
    if not PRODUCER_PATTERN.fullmatch(name):
        raise ValueError(f"producer name {name!r} must match {PRODUCER_PATTERN.pattern}")
    return name
