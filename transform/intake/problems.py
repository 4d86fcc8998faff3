"""Errors answered as RFC 9457 problem documents (`application/problem+json`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

PROBLEM_TYPE_BASE: Final = "https://sluice.invalid/problems/"
"""Problem types are relative names under this base; docs/intake.md describes each one."""
CONTENT_TYPE: Final = "application/problem+json"


@dataclass
class Problem(Exception):
    """What went wrong with a request, as the producer will read it."""

    status: int
    kind: str
    """The problem type's name, e.g. `body-too-large` (docs/intake.md lists them)."""
    title: str
    detail: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    """Every fault found, for a request that fails validation (each with `where` and `error`)."""
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.kind}: {self.detail}"

    def document(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        return body

    def body(self, instance: str | None = None) -> str:
        return json.dumps(self.document(instance), ensure_ascii=False)


def unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "unauthorized",
        "Missing or unknown key",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="sluice"'},
    )


def forbidden(detail: str) -> Problem:
    return Problem(403, "forbidden", "Not allowed for this producer", detail)


def bad_request(
    kind: str, title: str, detail: str, errors: list[dict[str, Any]] | None = None
) -> Problem:
    return Problem(400, kind, title, detail, errors or [])


def too_large(size: int, limit: int) -> Problem:
    return Problem(
        413,
        "body-too-large",
        "Request body too large",
        f"the body is {size} bytes; the limit is {limit} bytes (intake.max_body_bytes)",
    )


def throttled(producer: str, route: str, limit: int, retry_after: int) -> Problem:
    return Problem(
        429,
        "throttled",
        "Too many requests",
        f"producer {producer!r} is over {limit} requests a second on {route}; retry after "
        f"{retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )
