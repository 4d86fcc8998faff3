"""`GET /v1/health`: can the intake land a file now? Two checks, nothing written.

- landing: a conditional PutObject (`If-Match` an ETag no object has) of a probe key that never
  exists. S3 checks the caller may write before it checks the condition, so NoSuchKey (404) or
  PreconditionFailed (412) proves the bucket is there and takes this role's writes — with no
  object created, so nothing reaches the pipeline. (If-Match needs s3:GetObject on the probe key.)
- keys: the producers secret can be read and parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from transform.intake.producers import Producers

PROBE_KEY: Final = "_intake-health/probe"
NO_SUCH_ETAG: Final = '"00000000000000000000000000000000"'
WRITABLE_CODES: Final = frozenset({"NoSuchKey", "404", "PreconditionFailed", "412"})


@dataclass
class Health:
    checks: dict[str, str] = field(default_factory=dict)
    """Check name → `ok` or what is wrong."""

    @property
    def ok(self) -> bool:
        return all(value == "ok" for value in self.checks.values())

    def as_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "unavailable", "checks": self.checks}


def check_health(s3: S3Client, bucket: str, producers: Callable[[], Producers]) -> Health:
    health = Health()
    health.checks["landing"] = _landing(s3, bucket)
    try:
        producers()
        health.checks["keys"] = "ok"
    except Exception as err:  # noqa: BLE001  # any failure is the answer, named
        health.checks["keys"] = f"the producers secret cannot be read: {type(err).__name__}"
    return health


def _landing(s3: S3Client, bucket: str) -> str:
    try:
        s3.put_object(Bucket=bucket, Key=PROBE_KEY, Body=b"", IfMatch=NO_SUCH_ETAG)
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in WRITABLE_CODES:
            return "ok"
        return f"s3://{bucket} refuses writes: {code}"
    except BotoCoreError as err:
        return f"s3://{bucket} cannot be reached: {type(err).__name__}"
    # Written: the probe key existed with that ETag, which cannot happen; say so, do not hide it.
    return f"s3://{bucket}/{PROBE_KEY} was written; the conditional probe did not hold"
