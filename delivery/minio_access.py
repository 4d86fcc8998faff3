"""MinIO credentials from Secrets Manager, a TLS-verifying minio client, and one retry on rotation.

The secret (DESIGN §4) is a JSON object:

    {"endpoint": "minio.example.internal:9000", "access_key": "...", "secret_key": "...",
     "bucket": "sluice-archives", "secure": true, "region": "us-east-1"}

`secure` (default true) and `region` are optional. Without a region minio-py asks the bucket's
location once per client; give one to save that request.

The secret is read through Powertools' `get_secret`, cached for `secret_max_age_seconds`
(~5 min). The minio client is rebuilt only when the secret's content changes. TLS is on unless
the secret says `"secure": false`, and verifies the server against the PEM bundle named by
`SLUICE_MINIO_CA_BUNDLE` when set (else the system trust store). The client's HTTP pool does not
retry by itself (`retries=False`): the upload's own bounded retry decides what is transient.

Authentication failures and rotation: when MinIO answers one of `AUTH_ERROR_CODES`, `call()`
fetches the secret again, once, bypassing the cache (`force_fetch=True`), rebuilds the client
and runs the operation again. If MinIO still refuses, `MinioAuthError` names the endpoint, the
bucket and the secret (never its values). The codes:

- `SignatureDoesNotMatch`: the access key exists but the secret key is not the one MinIO has,
  the usual sight after the secret key was rotated on MinIO before our cache expired;
- `InvalidAccessKeyId`: the access key itself was replaced (rotation to a new user/key);
- `AccessDenied`: minio-py turns *any* 403 without a body into `AccessDenied`, and HEAD requests
  (`stat_object`, `bucket_exists`) never carry one, so a rotated key looks like this there. It is
  also what a real policy denial looks like; refetching once costs one Secrets Manager call and
  the second refusal is raised, so the bound holds.
"""

from __future__ import annotations

import io
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NamedTuple, TypeVar

import urllib3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import TransformParameterError
from minio import Minio
from minio.error import MinioException, S3Error

from infrastructure import environment

logger = Logger(child=True)

T = TypeVar("T")

AUTH_ERROR_CODES: Final = frozenset({"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"})
"""S3 error codes that make `call()` fetch the secret again once (see the module docstring)."""
MISSING_CODES: Final = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchObject"})
"""What MinIO answers for an object (or a version) that is not there."""

CONNECT_TIMEOUT_SECONDS: Final = 5.0
READ_TIMEOUT_SECONDS: Final = 60.0
"""Per socket read: an 8 MiB part PUT answers well within this on a working link."""

HEALTH_CONNECT_TIMEOUT_SECONDS: Final = 2.0
HEALTH_READ_TIMEOUT_SECONDS: Final = 3.0

_POOL_SIZE: Final = 4


class MinioSettingsError(ValueError):
    """The MinIO secret is malformed: the message names the secret and the field, never values."""


class MinioAuthError(RuntimeError):
    """MinIO refused the credentials, also after the secret was fetched again."""

    def __init__(self, message: str, *, endpoint: str, bucket: str, code: str | None) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.bucket = bucket
        self.code = code


@dataclass(frozen=True)
class MinioSettings:
    """Where and as whom to reach MinIO, as the secret says."""

    endpoint: str
    """`host:port`, no scheme."""
    access_key: str
    secret_key: str = field(repr=False)
    bucket: str
    secure: bool = True
    region: str | None = None

    @classmethod
    def from_secret(
        cls, value: object, *, secret_name: str, tls_required: bool = False
    ) -> MinioSettings:
        """Validate the secret's parsed JSON; a missing field or a wrong type names the field.
        With `tls_required`, `"secure": false` is refused too."""
        where = f"MinIO secret {secret_name!r}"
        if not isinstance(value, Mapping):
            raise MinioSettingsError(
                f"{where} must be a JSON object with endpoint, access_key, secret_key and bucket"
            )
        strings: dict[str, str] = {}
        for name in ("endpoint", "access_key", "secret_key", "bucket"):
            if name not in value:
                raise MinioSettingsError(f"{where} lacks the field {name!r}")
            item = value[name]
            if not isinstance(item, str):
                raise MinioSettingsError(
                    f"{where}: field {name!r} must be a string, not {type(item).__name__}"
                )
            if not item.strip():
                raise MinioSettingsError(f"{where}: field {name!r} is empty")
            strings[name] = item.strip()
        _check_endpoint(strings["endpoint"], where)
        secure = value.get("secure", True)
        if not isinstance(secure, bool):
            raise MinioSettingsError(
                f"{where}: field 'secure' must be true or false, not {type(secure).__name__}"
            )
        if tls_required and not secure:
            raise MinioSettingsError(
                f'{where} says "secure": false, refused: delivery.minio_tls_required is on '
                f"in this profile (archives and keys would cross the network in clear text); "
                f'give MinIO TLS and set "secure": true'
            )
        region = value.get("region")
        if region is not None and (not isinstance(region, str) or not region.strip()):
            raise MinioSettingsError(f"{where}: field 'region' must be a non-empty string or null")
        return cls(
            endpoint=strings["endpoint"],
            access_key=strings["access_key"],
            secret_key=strings["secret_key"],
            bucket=strings["bucket"],
            secure=secure,
            region=region.strip() if region else None,
        )


def _check_endpoint(endpoint: str, where: str) -> None:
    if "://" in endpoint or "/" in endpoint:
        raise MinioSettingsError(
            f"{where}: field 'endpoint' must be host:port without scheme or path "
            f"(TLS is chosen by the field 'secure')"
        )
    host, sep, port = endpoint.rpartition(":")
    if sep and not host.endswith("]") and ":" in host:
        raise MinioSettingsError(
            f"{where}: field 'endpoint' must be host:port ([v6]:port for IPv6)"
        )
    if sep and (not port.isdigit() or not 0 < int(port) < 65536 or not host):
        raise MinioSettingsError(f"{where}: field 'endpoint' must be host:port, port 1-65535")


def http_client(
    ca_bundle: str | None,
    *,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    read_timeout: float = READ_TIMEOUT_SECONDS,
) -> urllib3.PoolManager:
    """The HTTP pool under the minio client: certificates verified, no retries of its own."""
    return urllib3.PoolManager(
        num_pools=2,
        maxsize=_POOL_SIZE,
        cert_reqs="CERT_REQUIRED",
        ca_certs=ca_bundle,  # None: the system trust store (and SSL_CERT_FILE)
        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        retries=False,
    )


def _ca_bundle_from(value: str | Path | None) -> str | None:
    raw = str(value) if value else os.environ.get(environment.MINIO_CA_BUNDLE, "").strip()
    if not raw:
        return None
    if not Path(raw).is_file():
        raise MinioSettingsError(
            f"MinIO CA bundle {raw!r} (from {environment.MINIO_CA_BUNDLE}) is not a readable file"
        )
    return raw


class _Clients(NamedTuple):
    settings: MinioSettings
    source: object
    """The secret value these clients were built from (Powertools returns the cached object)."""
    main: Minio
    quick: Minio


class MinioAccess:
    """MinIO for delivery and redrive: settings from Secrets Manager, clients built from them."""

    def __init__(
        self,
        secret_name: str,
        *,
        max_age_seconds: int,
        ca_bundle: str | Path | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        tls_required: bool = False,
    ) -> None:
        """`ca_bundle` defaults to `SLUICE_MINIO_CA_BUNDLE`; neither set: the system store.
        `tls_required`: refuse a secret that says `"secure": false` (the functions pass
        `delivery.minio_tls_required`)."""
        if not secret_name.strip():
            raise MinioSettingsError("the MinIO secret name is empty")
        self.secret_name = secret_name
        self.max_age_seconds = max_age_seconds
        self.ca_bundle = _ca_bundle_from(ca_bundle)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._tls_required = tls_required
        self._clients: _Clients | None = None
        self._lock = threading.Lock()

    # -- settings and clients ------------------------------------------------------------------

    def _fetch(self, *, force: bool) -> object:
        try:
            return parameters.get_secret(
                self.secret_name,
                transform="json",
                max_age=self.max_age_seconds,
                force_fetch=force,
            )
        except TransformParameterError as err:
            raise MinioSettingsError(
                f"MinIO secret {self.secret_name!r} is not valid JSON"
            ) from err

    def _current(self, *, force: bool = False) -> _Clients:
        with self._lock:
            value = self._fetch(force=force)
            known = self._clients
            if known is not None and known.source is value:
                return known
            settings = MinioSettings.from_secret(
                value, secret_name=self.secret_name, tls_required=self._tls_required
            )
            if known is not None and known.settings == settings:
                self._clients = _Clients(settings, value, known.main, known.quick)
                return self._clients
            if known is not None:
                logger.info(
                    "MinIO secret changed; new client",
                    endpoint=settings.endpoint,
                    bucket=settings.bucket,
                )
            self._clients = _Clients(
                settings,
                value,
                self._build(settings, self._connect_timeout, self._read_timeout),
                self._build(settings, HEALTH_CONNECT_TIMEOUT_SECONDS, HEALTH_READ_TIMEOUT_SECONDS),
            )
            return self._clients

    def _build(self, settings: MinioSettings, connect: float, read: float) -> Minio:
        return Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
            http_client=http_client(self.ca_bundle, connect_timeout=connect, read_timeout=read),
        )

    @property
    def settings(self) -> MinioSettings:
        """The current settings (from the cached secret, fetched if the cache expired)."""
        return self._current().settings

    @property
    def last_settings(self) -> MinioSettings | None:
        """The settings last fetched, without fetching (None before the first call)."""
        known = self._clients
        return known.settings if known is not None else None

    def describe(self) -> str:
        """`bucket 'b' at MinIO host:port` from what is known, for error messages; no fetch."""
        known = self._clients
        if known is None:
            return f"the bucket of MinIO secret {self.secret_name!r}"
        scheme = "https" if known.settings.secure else "http"
        return f"bucket {known.settings.bucket!r} at MinIO {scheme}://{known.settings.endpoint}"

    # -- calls -----------------------------------------------------------------------------------

    def call(self, fn: Callable[[Minio, MinioSettings], T]) -> T:
        """`fn(client, settings)`; on an authentication failure, once more with a fresh secret."""
        return self._call(fn, quick=False)

    def _call(self, fn: Callable[[Minio, MinioSettings], T], *, quick: bool) -> T:
        clients = self._current()
        try:
            return fn(clients.quick if quick else clients.main, clients.settings)
        except S3Error as err:
            if err.code not in AUTH_ERROR_CODES:
                raise
            first_code = err.code
        logger.warning(
            "MinIO refused the credentials; fetching the secret again",
            code=first_code,
            endpoint=clients.settings.endpoint,
            bucket=clients.settings.bucket,
            secret=self.secret_name,
        )
        clients = self._current(force=True)
        try:
            return fn(clients.quick if quick else clients.main, clients.settings)
        except S3Error as err:
            if err.code not in AUTH_ERROR_CODES:
                raise
            settings = clients.settings
            raise MinioAuthError(
                f"MinIO at {settings.endpoint} refused the credentials from secret "
                f"{self.secret_name!r} for bucket {settings.bucket!r} ({err.code}), also after "
                f"fetching the secret again; check the secret's access_key/secret_key against "
                f"MinIO and that user's policy on the bucket",
                endpoint=settings.endpoint,
                bucket=settings.bucket,
                code=err.code,
            ) from err

    def healthy(self) -> bool:
        """Whether MinIO takes a write now (short timeouts); for redrive.

        Writes a small probe object under `PROBE_PREFIX`, reads it back and deletes that version:
        a MinIO that answers a HEAD but refuses writes (disk full, lost quorum, a policy change)
        is not healthy, and redrive must not spend windows' redrives on it. Network, TLS, HTTP,
        authentication and S3 errors, or a probe read back wrong, make it False (logged). A
        secret that cannot be read or is malformed raises: that is not MinIO being down.
        """
        try:
            self._call(write_probe, quick=True)
        except (
            MinioException,
            MinioAuthError,
            ProbeMismatch,
            urllib3.exceptions.HTTPError,
            OSError,
        ) as err:
            logger.warning(
                "MinIO does not take writes",
                minio=self.describe(),
                error=_summary(err),
            )
            return False
        return True


class ProbeMismatch(RuntimeError):
    """MinIO returned other bytes than the health probe wrote."""


PROBE_PREFIX: Final = ".sluice-health/"
"""Where the health probe writes, outside the archive prefix consumers read."""


def write_probe(client: Minio, settings: MinioSettings) -> None:
    """Put a small object under PROBE_PREFIX, read it back, delete that version."""
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    body = f"sluice health probe {key}".encode()
    written = client.put_object(settings.bucket, key, io.BytesIO(body), len(body))
    try:
        response = client.get_object(settings.bucket, key, version_id=written.version_id)
        try:
            got = response.read()
        finally:
            response.close()
            response.release_conn()
        if got != body:
            raise ProbeMismatch(f"{settings.bucket}/{key}: read back {len(got)} other bytes")
    finally:
        # this version only: a versioned bucket keeps no delete marker and no old version
        client.remove_object(settings.bucket, key, version_id=written.version_id)


def _summary(err: BaseException) -> str:
    if isinstance(err, S3Error):
        return f"{err.code}: {err.message}"
    return f"{type(err).__name__}: {err}"
