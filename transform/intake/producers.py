"""Who is asking: per-producer API keys, kept hashed in one Secrets Manager secret.

The secret's value: `{"producers": {"<name>": {"key_sha256": ["<hex>", …]}}}`. A producer may
hold several keys (rotation: add the new one, move the producer over, remove the old one). Only
hashes are kept, so the secret never holds a key a producer could use. A request carries its key
as `Authorization: Bearer <key>`; the producer it names decides the request's prefix.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from transform.intake.problems import Problem, unauthorized
from transform.intake.requests import check_producer

KEY_BYTES: Final = 32
SCHEME: Final = "bearer"
SHA256_HEX_CHARS: Final = 64


class RegistryError(ValueError):
    """The producers secret is malformed; the message names what is wrong in it."""


class Producers(NamedTuple):
    by_key_sha256: Mapping[str, str]
    """sha256 hex of a key → the producer that holds it."""

    @classmethod
    def parse(cls, secret: str) -> Producers:
        try:
            return cls(_keys(json.loads(secret)["producers"]))
        except (ValueError, KeyError, TypeError) as err:
            raise RegistryError(f"the producers secret is malformed: {err}") from err

    def identify(self, authorization: str | None) -> str:
        """The producer whose key the `Authorization` header carries; 401 otherwise."""
        if not authorization:
            raise unauthorized("send your key as `Authorization: Bearer <key>`")
        scheme, _, key = authorization.strip().partition(" ")
        if scheme.lower() != SCHEME or not key.strip():
            raise unauthorized("the Authorization header must be `Bearer <key>`")
        producer = self.by_key_sha256.get(key_sha256(key.strip()))
        if producer is None:
            raise unauthorized("this key is not known (revoked, or mistyped)")
        return producer


def _keys(producers: Any) -> dict[str, str]:
    if not isinstance(producers, dict):
        raise TypeError("'producers' is not an object")
    found: dict[str, str] = {}
    for name, entry in producers.items():
        check_producer(name)
        for digest in entry["key_sha256"]:
            if not isinstance(digest, str) or len(digest) != SHA256_HEX_CHARS:
                raise ValueError(f"producer {name!r}: {digest!r} is not a sha256 hex")
            if digest in found:
                raise ValueError(f"producers {found[digest]!r} and {name!r} share a key")
            found[digest] = name
    return found


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(producer: str) -> tuple[str, str]:
    """A fresh key for `producer` and the sha256 to put in the secret."""
    key = f"sk_{check_producer(producer)}_{secrets.token_urlsafe(KEY_BYTES)}"
    return key, key_sha256(key)


def with_key(secret: str | None, producer: str, digest: str) -> str:
    """The secret's value with `digest` added to `producer`'s keys (created if new)."""
    document: dict[str, Any] = json.loads(secret) if secret else {"producers": {}}
    entry = document.setdefault("producers", {}).setdefault(producer, {"key_sha256": []})
    if digest not in entry["key_sha256"]:
        entry["key_sha256"].append(digest)
    Producers.parse(json.dumps(document))  # still valid as a whole
    return json.dumps(document, indent=2, sort_keys=True)


def require_prefix(producer: str, key: str) -> None:
    """A producer reads only what is under its own prefix; 403 otherwise."""
    if not key.startswith(f"{producer}/"):
        raise Problem(
            403, "forbidden", "Not this producer's file", "the file is not under your prefix"
        )
