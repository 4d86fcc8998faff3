"""Delivery's ledger in DynamoDB: permanent file claims and window states (DESIGN §4a).

One table, key `pk` (S), TTL attribute `expires_at` (epoch seconds):

- `FILE#<file_id>`: `owner` (the window that claimed it), `claimed_at_ms`, `expires_at`.
  Claims are permanent (rule 2): written under `attribute_not_exists(pk) OR owner = :w`, never
  moved to another window or deleted; a window's retry re-claims its own files (refreshing
  `claimed_at_ms` and the TTL, never the owner).
- `WIN#<window_id>`: `state` (CLAIMED | DELIVERED | EMPTY | PARKED), `staged_key`, how many
  exclusion chunks and exclusions it has (`exclusion_chunks`, `exclusion_count`), the parts
  verified so far in MinIO's incoming area (`verified_parts`, by part number: a retry skips
  them), the committed archive `parts` (rule 4), `redrive_count`, `parked_reason`, timestamps,
  `file_count`, the first delivery's `latency_ms` histogram (delivery.latency). Only a final
  window (DELIVERED, EMPTY) carries `expires_at`: one not yet delivered stays until it is.
  While not final it also carries `pending` (its state) and `pending_since_ms` (first claimed):
  the keys of the sparse index `pending-windows`, so that redrive and `sluice redrive --parked`
  find the windows still to deliver with a Query whose cost is the number of such windows, never
  the table's history (about one FILE item per file for the TTL: ~35 M at 10 files/s).
- `EXCL#<window_id>#<n>`: chunk n of the window's persisted exclusions (so every attempt builds
  the same bytes, rule 3), `gz`: a gzipped JSON array of at most `EXCLUSION_CHUNK_BYTES`: a
  window with 100,000 bad lines keeps a small window item (DynamoDB caps an item at 400 KB).
  Chunks are written before the window item counts them, never changed after, and get the
  window's TTL when it is final.

States move CLAIMED -> DELIVERED | EMPTY | PARKED, and PARKED -> CLAIMED only by `unpark`
(the operator's `sluice redrive --window`). DELIVERED and EMPTY are final: nothing moves a
window out of them, and `mark_parked` on them is a no-op (a late, verified delivery beats a
redrive's decision to park). A verified delivery may still land on a PARKED window: the archive
is in MinIO, so the ledger says so.

Same style as the forwarder's `transform.idempotency`: the low-level boto3 client, conditional
writes, an injectable clock (and sleep, so tests never wait).
"""

from __future__ import annotations

import gzip
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from aws_lambda_powertools import Logger
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from delivery.latency import LatencyHistogram

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = Logger(child=True)

LEDGER_KEY: Final = "pk"
LEDGER_TTL_ATTRIBUTE: Final = "expires_at"
PENDING_INDEX: Final = "pending-windows"
PENDING_KEY: Final = "pending"
PENDING_SINCE: Final = "pending_since_ms"
"""The sparse index of windows not yet final (Terraform: dynamodb.tf; locally:
infrastructure/local/provision/resources.py)."""
QUERY_PAGE_LIMIT: Final = 100
Plan = dict[str, int | str]
"""A window's archive settings, by tunable name (`WindowRecord.plan`)."""
SUMMARY_ATTRIBUTES: Final = (
    LEDGER_KEY,
    "state",
    "staged_key",
    "redrive_count",
    "claimed_at_ms",
    "updated_at_ms",
    "delivered_at_ms",
    "parked_reason",
    "file_count",
    "attempted_at_ms",
    "redriven_at_ms",
)
"""What `get_windows(summary=True)` reads of a window: its state and times, not its parts."""
FILE_PREFIX: Final = "FILE#"
WINDOW_PREFIX: Final = "WIN#"
LEASE_PREFIX: Final = "LEASE#"
"""A window's lease, an item of its own: held by one invocation at a time (DESIGN §4a rule 3a)."""
SWEEP_KEY: Final = "SWEEP#staging"
EXCLUSION_PREFIX: Final = "EXCL#"
EXCLUSION_CHUNK_BYTES: Final = 256 * 1024
"""Serialized exclusions per chunk item: well under DynamoDB's 400 KB item limit."""
EXCLUSION_DETAIL_MAX_CHARS: Final = 512
"""An exclusion's detail is cut to this (an error text can be long; the reason is the code)."""
BATCH_WRITE_LIMIT: Final = 25
"""The sweep's low-water mark: the start of the oldest hour of staged windows it still lists."""
TRANSACTION_LIMIT: Final = 100
"""Items per TransactWriteItems call (DynamoDB's limit)."""
BATCH_GET_LIMIT: Final = 100
"""Keys per BatchGetItem call (DynamoDB's limit)."""
TRANSIENT_ATTEMPTS: Final = 8
"""Calls that make no progress (conflicts, throttling) allowed per transaction or batch."""
BACKOFF_BASE_SECONDS: Final = 0.05
BACKOFF_CAP_SECONDS: Final = 2.0

# Whole-call errors worth another try; botocore's standard mode has already retried some of them.
_TRANSIENT_CODES: Final = frozenset(
    {
        "TransactionConflictException",
        "TransactionInProgressException",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
# Per-item reasons in a cancelled transaction that a retry of the item may get past.
_RETRYABLE_REASONS: Final = frozenset(
    {"None", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)
_CONDITION_FAILED: Final = "ConditionalCheckFailed"
_CLAIM_CONDITION: Final = "attribute_not_exists(pk) OR #owner = :w"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class WindowState(StrEnum):
    CLAIMED = "CLAIMED"
    DELIVERED = "DELIVERED"
    EMPTY = "EMPTY"
    PARKED = "PARKED"


class PartRecord(NamedTuple):
    """One verified archive part, as uploaded to MinIO."""

    part: int
    minio_key: str
    minio_version: str | None
    sha256: str
    etag: str
    size: int
    part_size: int
    file_count: int
    check: str


@dataclass(frozen=True)
class ExclusionRecord:
    """A file the window leaves out of its archive, with the reason the manifest gives."""

    file_id: str
    key: str | None
    version_id: str | None
    reason: str
    detail: str

    def __post_init__(self) -> None:
        if len(self.detail) > EXCLUSION_DETAIL_MAX_CHARS:
            object.__setattr__(self, "detail", self.detail[: EXCLUSION_DETAIL_MAX_CHARS - 1] + "…")


@dataclass(frozen=True)
class WindowRecord:
    window_id: str
    state: WindowState
    staged_key: str
    exclusions: tuple[ExclusionRecord, ...]
    """Loaded by `get_window` and `begin` only; `get_windows` leaves it empty (see the count)."""
    parts: tuple[PartRecord, ...]
    redrive_count: int
    claimed_at_ms: int | None
    updated_at_ms: int
    delivered_at_ms: int | None
    parked_reason: str | None
    file_count: int
    plan: Plan = field(default_factory=dict)
    """The archive settings of the first attempt (part cap, gzip codec and level, part size, max
    parts): every retry builds with them, so a deploy between attempts cannot change the bytes."""
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    """End-to-end latency of the window's files at its first delivery (empty before)."""
    exclusion_count: int = 0
    exclusion_chunks: int = 0
    verified_parts: dict[int, PartRecord] = field(default_factory=dict)
    """Parts verified in MinIO's incoming area, not yet committed, by part number."""
    duplicate_files: int | None = None
    """Files of the staged window it did not deliver because another window owns them or the
    window repeats them (Firehose's duplicates), set when it settles; None before."""
    attempted_at_ms: int | None = None
    """When a delivery attempt last began work on the window (`begin`); None before any."""
    redriven_at_ms: int | None = None
    """When redrive last invoked delivery for the window (`record_redrive`); None before."""

    @property
    def attempted_since_redrive(self) -> bool:
        """A delivery attempt began since the last redrive: a window still stuck after that is
        in trouble of its own, not waiting in a queue behind others."""
        if self.attempted_at_ms is None:
            return False
        return self.redriven_at_ms is None or self.attempted_at_ms >= self.redriven_at_ms


class LedgerError(Exception):
    """The ledger could not do what was asked."""


class LedgerRetriesExhausted(LedgerError):
    """DynamoDB kept answering with conflicts or throttling; the caller's retry applies."""


class WindowStateError(LedgerError):
    """A window is not in a state the requested transition starts from."""

    def __init__(self, window_id: str, action: str, state: str | None, detail: str = "") -> None:
        found = f"state {state}" if state else "no record"
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"window {window_id}: cannot {action}{suffix}: it has {found}")
        self.window_id = window_id
        self.action = action
        self.state = state


class Ledger:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
        *,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = TRANSIENT_ATTEMPTS,
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._sleep = sleep
        self._attempts = attempts

    # -- the window's lease (rule 3a) -----------------------------------------------------

    def acquire_lease(self, window_id: str, holder: str, until_ms: int) -> bool:
        """Hold the window until `until_ms` unless another holder's lease is still running.

        One conditional write: free if there is no lease, it has expired, or it is ours (a
        retry in the same invocation). An expired lease is simply taken over: its holder died
        or ran out of time. The item expires (TTL) a day after the lease.
        """
        now_ms = int(self._clock() * 1000)
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item={
                    LEDGER_KEY: {"S": LEASE_PREFIX + window_id},
                    "holder": {"S": holder},
                    "until_ms": {"N": str(until_ms)},
                    LEDGER_TTL_ATTRIBUTE: {"N": str(until_ms // 1000 + 86_400)},
                },
                ConditionExpression="attribute_not_exists(#pk) OR until_ms < :now OR holder = :me",
                ExpressionAttributeNames={"#pk": LEDGER_KEY},
                ExpressionAttributeValues={
                    ":now": {"N": str(now_ms)},
                    ":me": {"S": holder},
                },
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release_lease(self, window_id: str, holder: str) -> None:
        """Give the lease back if it is still ours (a lease taken over is left to its holder)."""
        try:
            self._dynamodb.delete_item(
                TableName=self._table,
                Key={LEDGER_KEY: {"S": LEASE_PREFIX + window_id}},
                ConditionExpression="holder = :me",
                ExpressionAttributeValues={":me": {"S": holder}},
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    # -- file claims (rule 2) -------------------------------------------------------------

    def claim_files(self, window_id: str, file_ids: Sequence[str]) -> dict[str, str]:
        """Claim every file not yet claimed for `window_id`; returns file_id -> owner for all.

        Ours or another window's: another window's claim is never overwritten, deleted or
        released; a retry re-claims the window's own files (same owner, claim time and TTL
        refreshed).
        Repeated ids are claimed once (a transaction may not touch an item twice).
        """
        unique = list(dict.fromkeys(file_ids))
        owners: dict[str, str] = {}
        for start in range(0, len(unique), TRANSACTION_LIMIT):
            chunk = unique[start : start + TRANSACTION_LIMIT]
            owners.update(self._claim_chunk(window_id, chunk))
        return owners

    def owners(self, file_ids: Sequence[str]) -> dict[str, str]:
        """file_id -> owner window for the claimed ones; ids never claimed are absent.

        Consistent reads, so a claim made just before is seen.
        """
        unique = list(dict.fromkeys(file_ids))  # BatchGetItem refuses duplicate keys
        found: dict[str, str] = {}
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            chunk = unique[start : start + BATCH_GET_LIMIT]
            keys = [{LEDGER_KEY: {"S": FILE_PREFIX + fid}} for fid in chunk]
            for item in self._batch_get_items(keys, projection=("pk", "owner")):
                found[item[LEDGER_KEY]["S"].removeprefix(FILE_PREFIX)] = item["owner"]["S"]
        return found

    def _claim_chunk(self, window_id: str, chunk: list[str]) -> dict[str, str]:
        """One transaction's worth, retried until every file has an owner.

        Bounded: each round either settles at least one file (its condition failed, so another
        window owns it) or spends one of `attempts` on a conflict or throttling.
        """
        settled: dict[str, str] = {}
        pending = chunk
        stalls = 0
        while pending:
            newly_settled, retry = self._try_claim(window_id, pending)
            settled.update(newly_settled)
            if len(retry) == len(pending):
                stalls += 1
                if stalls >= self._attempts:
                    raise LedgerRetriesExhausted(
                        f"window {window_id}: claiming {len(retry)} files made no progress "
                        f"after {stalls} attempts"
                    )
                self._sleep(self._backoff(stalls))
            pending = retry
        return settled

    def _try_claim(self, window_id: str, pending: list[str]) -> tuple[dict[str, str], list[str]]:
        """One TransactWriteItems; returns (files now settled -> owner, files to try again)."""
        try:
            self._dynamodb.transact_write_items(TransactItems=self._claim_items(window_id, pending))
        except ClientError as err:
            code = _error_code(err)
            if code == "TransactionCanceledException":
                return self._after_cancellation(err, pending)
            if code in _TRANSIENT_CODES:
                logger.info("ledger claim retried", window=window_id, error=code)
                return {}, pending
            raise
        return dict.fromkeys(pending, window_id), []

    def _claim_items(self, window_id: str, file_ids: list[str]) -> list[Any]:
        now = self._clock()
        claimed_at_ms = {"N": str(int(now * 1000))}
        expires_at = {"N": str(int(now) + self._ttl_seconds)}
        return [
            {
                # Put, not Update (which could keep the first claim's time): moto, the local
                # stand-in, applies an UpdateItem ~5x slower, and the condition already makes a
                # retry's Put rewrite only the window's own claim (refreshing time and TTL).
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        LEDGER_KEY: {"S": FILE_PREFIX + file_id},
                        "owner": {"S": window_id},
                        "claimed_at_ms": claimed_at_ms,
                        LEDGER_TTL_ATTRIBUTE: expires_at,
                    },
                    "ConditionExpression": _CLAIM_CONDITION,
                    "ExpressionAttributeNames": {"#owner": "owner"},
                    "ExpressionAttributeValues": {":w": {"S": window_id}},
                    # The current owner comes back with the cancellation: no read needed.
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
            for file_id in file_ids
        ]

    def _after_cancellation(
        self, err: ClientError, pending: list[str]
    ) -> tuple[dict[str, str], list[str]]:
        """Sort a cancelled transaction's files into settled (owned) and to-retry."""
        raw_reasons: Any = err.response.get("CancellationReasons")
        reasons: list[dict[str, Any]] = list(raw_reasons or [])
        if len(reasons) != len(pending):
            # No (usable) reasons: whichever files have an owner now are settled.
            logger.info("transaction cancelled without reasons; reading owners")
            return self._settle_by_reading(pending)
        settled: dict[str, str] = {}
        retry: list[str] = []
        unread: list[str] = []
        for file_id, reason in zip(pending, reasons, strict=True):
            code = reason.get("Code", "None")
            if code == _CONDITION_FAILED:
                owner = reason.get("Item", {}).get("owner", {}).get("S")
                if owner is None:
                    unread.append(file_id)
                else:
                    settled[file_id] = owner
            elif code in _RETRYABLE_REASONS:
                retry.append(file_id)
            else:
                raise LedgerError(
                    f"claim of file {file_id} refused: {code}: {reason.get('Message', '')}"
                )
        if unread:
            also_settled, also_retry = self._settle_by_reading(unread)
            settled.update(also_settled)
            retry.extend(also_retry)
        return settled, retry

    def _settle_by_reading(self, file_ids: list[str]) -> tuple[dict[str, str], list[str]]:
        owners = self.owners(file_ids)
        return owners, [file_id for file_id in file_ids if file_id not in owners]

    def _batch_get_items(
        self, keys: list[dict[str, Any]], *, projection: Sequence[str] = ()
    ) -> Iterator[dict[str, Any]]:
        """The items of `keys` (at most 100) that exist, unprocessed keys retried."""
        stalls = 0
        while keys:
            table: dict[str, Any] = {"Keys": keys, "ConsistentRead": True}
            if projection:
                names = {f"#p{n}": name for n, name in enumerate(projection)}
                table["ProjectionExpression"] = ", ".join(names)
                table["ExpressionAttributeNames"] = names
            request: dict[str, Any] = {self._table: table}
            response: Any = self._dynamodb.batch_get_item(RequestItems=request)
            yield from response.get("Responses", {}).get(self._table, [])
            left = response.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
            if left and len(left) == len(keys):
                stalls += 1
                if stalls >= self._attempts:
                    raise LedgerRetriesExhausted(f"{len(left)} ledger keys stayed unprocessed")
                self._sleep(self._backoff(stalls))
            keys = list(left)

    def _backoff(self, attempt: int) -> float:
        ceiling: float = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
        return ceiling * random.random()  # noqa: S311  # jitter, not security

    # -- window records -------------------------------------------------------------------

    def begin(
        self,
        window_id: str,
        staged_key: str,
        exclusions: Sequence[ExclusionRecord],
        plan: Plan | None = None,
    ) -> WindowRecord:
        """The window's record, created in CLAIMED with `exclusions` if absent.

        On a retry the record comes back unchanged: its persisted exclusions win (rule 3), and
        a DELIVERED, EMPTY or PARKED window stays so; the caller acts on the state returned.
        A record that `record_redrive` created before any attempt gets its exclusions now.
        The exclusions go to chunk items first; the window item then counts them, once.
        """
        current = self._raw_window(window_id)
        chunks = _chunked(exclusions)
        if not _has_exclusions(current) and _state_of(current) not in _FINAL_STATES:
            # Only this invocation writes them: it holds the window's lease (rule 3a).
            self._put_chunks(window_id, 0, chunks)
        now = self._clock()
        try:
            response = self._dynamodb.update_item(
                TableName=self._table,
                Key=_window_key(window_id),
                # Every attribute if_not_exists: one atomic write that never changes an existing
                # one. `pending` copies the state (absent: CLAIMED); the condition keeps a final
                # window out of the index.
                UpdateExpression=(
                    "SET #state = if_not_exists(#state, :claimed), "
                    "#pending = if_not_exists(#state, :claimed), "
                    "staged_key = if_not_exists(staged_key, :key), "
                    "exclusion_chunks = if_not_exists(exclusion_chunks, :chunks), "
                    "exclusion_count = if_not_exists(exclusion_count, :count), "
                    "verified_parts = if_not_exists(verified_parts, :no_parts), "
                    "#plan = if_not_exists(#plan, :plan), "
                    "redrive_count = if_not_exists(redrive_count, :zero), "
                    "claimed_at_ms = if_not_exists(claimed_at_ms, :now), "
                    "#since = if_not_exists(claimed_at_ms, :now), "
                    "updated_at_ms = if_not_exists(updated_at_ms, :now), "
                    "attempted_at_ms = :now "
                    "REMOVE #exp"
                ),
                ConditionExpression=_NOT_FINAL,
                ExpressionAttributeNames={**_PENDING_NAMES, "#plan": "plan"},
                ExpressionAttributeValues={
                    ":claimed": {"S": WindowState.CLAIMED},
                    ":parked": {"S": WindowState.PARKED},
                    ":key": {"S": staged_key},
                    ":chunks": {"N": str(len(chunks))},
                    ":count": {"N": str(len(exclusions))},
                    ":no_parts": {"M": {}},
                    ":plan": _serializer.serialize(dict(plan or {})),
                    ":zero": {"N": "0"},
                    ":now": {"N": str(int(now * 1000))},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as err:
            if _error_code(err) != "ConditionalCheckFailedException":
                raise
            return self._with_exclusions(self._final_item(err, window_id))
        return self._with_exclusions(response["Attributes"])

    def add_exclusions(self, window_id: str, exclusions: Sequence[ExclusionRecord]) -> None:
        """Persist exclusions found after `begin` (a ref found unreadable on a later part or
        attempt), so later attempts build from them too: new chunks, then one conditional
        count update. Only while the window is CLAIMED."""
        if not exclusions:
            return
        current = self._raw_window(window_id)
        if _state_of(current) != WindowState.CLAIMED:
            raise WindowStateError(window_id, "add exclusions", _state_of(current))
        first = int(current.get("exclusion_chunks", {}).get("N", "0"))
        chunks = _chunked(exclusions)
        self._put_chunks(window_id, first, chunks)
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=_window_key(window_id),
                UpdateExpression=(
                    "SET exclusion_chunks = :chunks, "
                    "exclusion_count = if_not_exists(exclusion_count, :zero) + :added"
                ),
                ConditionExpression=(
                    "#state = :claimed AND "
                    "(exclusion_chunks = :first OR attribute_not_exists(exclusion_chunks))"
                ),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":chunks": {"N": str(first + len(chunks))},
                    ":first": {"N": str(first)},
                    ":added": {"N": str(len(exclusions))},
                    ":zero": {"N": "0"},
                    ":claimed": {"S": WindowState.CLAIMED},
                },
            )
        except ClientError as err:
            if _error_code(err) == "ConditionalCheckFailedException":
                raise WindowStateError(
                    window_id, "add exclusions", None, "not CLAIMED, or changed meanwhile"
                ) from err
            raise

    def record_verified_part(self, window_id: str, part: PartRecord) -> None:
        """Remember a part verified in MinIO's incoming area: a retry or a continuation skips
        it (rule 4a). Not on an EMPTY window, nor one `begin` has not created."""
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=_window_key(window_id),
                UpdateExpression="SET verified_parts.#part = :part, updated_at_ms = :now",
                ConditionExpression="attribute_exists(verified_parts)",
                ExpressionAttributeNames={"#part": str(part.part)},
                ExpressionAttributeValues={
                    ":part": _serializer.serialize(part._asdict()),
                    ":now": {"N": str(int(self._clock() * 1000))},
                },
            )
        except ClientError as err:
            if _error_code(err) == "ConditionalCheckFailedException":
                raise WindowStateError(window_id, "record a verified part", None) from err
            raise

    def get_window(self, window_id: str) -> WindowRecord | None:
        """The window's record with its exclusions (one more read per exclusion chunk)."""
        item = self._raw_window(window_id)
        return self._with_exclusions(item) if item else None

    def _with_exclusions(self, item: Mapping[str, Any]) -> WindowRecord:
        record = _window_record(item)
        if not record.exclusion_chunks:
            return record
        keys = [_chunk_key(record.window_id, n) for n in range(record.exclusion_chunks)]
        found: dict[str, list[Any]] = {}
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            for chunk in self._batch_get_items(keys[start : start + BATCH_GET_LIMIT]):
                found[chunk[LEDGER_KEY]["S"]] = json.loads(gzip.decompress(chunk["gz"]["B"]))
        missing = [key[LEDGER_KEY]["S"] for key in keys if key[LEDGER_KEY]["S"] not in found]
        if missing:
            raise LedgerError(f"window {record.window_id}: exclusion chunks missing: {missing}")
        loaded = [ExclusionRecord(**e) for key in keys for e in found[key[LEDGER_KEY]["S"]]]
        return replace(record, exclusions=record.exclusions + tuple(loaded))

    def _put_chunks(self, window_id: str, first: int, chunks: Sequence[bytes]) -> None:
        """BatchWriteItem, 25 chunk items a call, unprocessed items retried with backoff."""
        items = [
            {
                "PutRequest": {
                    "Item": {
                        LEDGER_KEY: {"S": EXCLUSION_PREFIX + f"{window_id}#{first + n}"},
                        "gz": {"B": chunk},
                    }
                }
            }
            for n, chunk in enumerate(chunks)
        ]
        for start in range(0, len(items), BATCH_WRITE_LIMIT):
            batch: list[Any] = items[start : start + BATCH_WRITE_LIMIT]
            stalls = 0
            while batch:
                response: Any = self._dynamodb.batch_write_item(RequestItems={self._table: batch})
                left = response.get("UnprocessedItems", {}).get(self._table, [])
                if left and len(left) == len(batch):
                    stalls += 1
                    if stalls >= self._attempts:
                        raise LedgerRetriesExhausted(f"{len(left)} exclusion chunks unwritten")
                    self._sleep(self._backoff(stalls))
                batch = list(left)

    def _expire_chunks(self, window_id: str) -> None:
        """A final window's exclusion chunks expire with it."""
        item = self._raw_window(window_id)
        expires = {"N": str(int(self._clock()) + self._ttl_seconds)}
        for n in range(int(item.get("exclusion_chunks", {}).get("N", "0"))):
            self._dynamodb.update_item(
                TableName=self._table,
                Key=_chunk_key(window_id, n),
                UpdateExpression="SET #exp = :exp",
                ExpressionAttributeNames={"#exp": LEDGER_TTL_ATTRIBUTE},
                ExpressionAttributeValues={":exp": expires},
            )

    def mark_delivered(
        self,
        window_id: str,
        parts: Sequence[PartRecord],
        file_count: int,
        latency: LatencyHistogram | None = None,
        duplicates: int = 0,
    ) -> None:
        """DELIVERED with its verified parts (rule 4); from CLAIMED, or PARKED (see module doc).
        `latency` is kept from the first delivery only, like `delivered_at_ms`, and so is
        `duplicates` (the window's `duplicate_files`).

        On a DELIVERED window: the same parts and count are a no-op; the same bytes uploaded
        again (a rebuild after the object went missing from MinIO: every field equal but the
        MinIO version) replace the recorded versions; anything else raises WindowStateError.
        """
        histogram = latency or LatencyHistogram()
        old = self._set_delivered(
            window_id,
            parts,
            (file_count, duplicates),
            histogram,
            WindowState.CLAIMED,
            WindowState.PARKED,
        )
        if old is None:
            self._expire_chunks(window_id)
            return
        state = _state_of(old)
        if state != WindowState.DELIVERED:
            raise WindowStateError(window_id, "mark DELIVERED", state)
        recorded = _window_record(old)
        if recorded.file_count != file_count or not _same_bytes(recorded.parts, parts):
            raise WindowStateError(
                window_id, "mark DELIVERED", state, "with other parts or file count than recorded"
            )
        if recorded.parts != tuple(parts):  # same bytes, uploaded again: record the new versions
            again = self._set_delivered(
                window_id, parts, (file_count, duplicates), histogram, WindowState.DELIVERED
            )
            if again is not None:
                raise WindowStateError(window_id, "mark DELIVERED", _state_of(again))

    def _set_delivered(
        self,
        window_id: str,
        parts: Sequence[PartRecord],
        counts: tuple[int, int],
        latency: LatencyHistogram,
        *from_states: WindowState,
    ) -> dict[str, Any] | None:
        """`counts`: the files delivered, and the duplicates the window did not deliver."""
        file_count, duplicates = counts
        # DynamoDB refuses expression values the expressions do not use: one per state.
        states = {f":from{n}": {"S": state.value} for n, state in enumerate(from_states)}
        return self._conditional_update(
            window_id,
            # The first delivery's time stays: latency is measured to it.
            update=(
                "SET #state = :delivered, parts = :parts, file_count = :count, "
                "delivered_at_ms = if_not_exists(delivered_at_ms, :now), updated_at_ms = :now, "
                "latency_ms = if_not_exists(latency_ms, :latency), "
                "duplicate_files = if_not_exists(duplicate_files, :dups), "
                "verified_parts = :no_parts, "
                "#exp = :exp REMOVE parked_reason, #pending, #since"
            ),
            condition=f"#state IN ({', '.join(states)})",
            values={
                **states,
                ":delivered": {"S": WindowState.DELIVERED},
                ":parts": _serializer.serialize([part._asdict() for part in parts]),
                ":count": {"N": str(file_count)},
                ":latency": _serializer.serialize(latency.to_item()),
                ":dups": {"N": str(duplicates)},
                ":no_parts": {"M": {}},
                **self._times(self._clock()),
            },
        )

    def mark_empty(self, window_id: str, staged_key: str, duplicates: int = 0) -> None:
        """EMPTY: the window owns no file and writes no object (rule 5). Idempotent.
        `duplicates`: its files other windows own (kept from the first call).

        Creates the record if absent; refused only for a DELIVERED window.
        """
        old = self._conditional_update(
            window_id,
            update=(
                "SET #state = :empty, staged_key = if_not_exists(staged_key, :key), "
                "redrive_count = if_not_exists(redrive_count, :zero), file_count = :zero, "
                "duplicate_files = if_not_exists(duplicate_files, :dups), "
                "updated_at_ms = :now, #exp = :exp REMOVE parked_reason, #pending, #since"
            ),
            condition="attribute_not_exists(pk) OR #state <> :delivered",
            values={
                ":empty": {"S": WindowState.EMPTY},
                ":delivered": {"S": WindowState.DELIVERED},
                ":key": {"S": staged_key},
                ":zero": {"N": "0"},
                ":dups": {"N": str(duplicates)},
                **self._times(self._clock()),
            },
        )
        if old is not None:
            raise WindowStateError(window_id, "mark EMPTY", _state_of(old))

    def mark_parked(self, window_id: str, reason: str) -> None:
        """PARKED with `reason`, from CLAIMED (or PARKED: the reason is replaced).

        A DELIVERED or EMPTY window is left as it is (logged, no error): it needs no redrive,
        and redrive racing a late successful delivery must not fail. No record: raises.
        """
        old = self._conditional_update(
            window_id,
            update=(
                "SET #state = :parked, #pending = :parked, parked_reason = :reason, "
                "#since = if_not_exists(claimed_at_ms, :now), updated_at_ms = :now REMOVE #exp"
            ),
            condition="attribute_exists(pk) AND NOT #state IN (:delivered, :empty)",
            values={
                ":parked": {"S": WindowState.PARKED},
                ":reason": {"S": reason},
                ":delivered": {"S": WindowState.DELIVERED},
                ":empty": {"S": WindowState.EMPTY},
                ":now": {"N": str(int(self._clock() * 1000))},
            },
        )
        if old is None:
            return
        state = _state_of(old)
        if state is None:
            raise WindowStateError(window_id, "park", None)
        logger.info("window not parked: already final", window=window_id, state=state)

    def unpark(self, window_id: str) -> None:
        """PARKED -> CLAIMED with the redrive count reset (the operator's redrive)."""
        old = self._conditional_update(
            window_id,
            update=(
                "SET #state = :claimed, #pending = :claimed, redrive_count = :zero, "
                "updated_at_ms = :now REMOVE parked_reason, #exp"
            ),
            condition="#state = :parked",
            values={
                ":claimed": {"S": WindowState.CLAIMED},
                ":parked": {"S": WindowState.PARKED},
                ":zero": {"N": "0"},
                ":now": {"N": str(int(self._clock() * 1000))},
            },
        )
        if old is not None:
            raise WindowStateError(window_id, "unpark", _state_of(old))

    def record_redrive(self, window_id: str, staged_key: str, *, counted: bool = True) -> int:
        """Record a redrive of the window, counted toward `max_redrives` (atomic) unless
        `counted` is False; returns the count.

        Creates the record in CLAIMED if absent (a staged window no attempt ever recorded),
        without exclusions: the first `begin` persists them. Changes no state.
        """
        now = self._clock()
        try:
            response = self._dynamodb.update_item(
                TableName=self._table,
                Key=_window_key(window_id),
                UpdateExpression=(
                    "SET redrive_count = if_not_exists(redrive_count, :zero) + :one, "
                    "#state = if_not_exists(#state, :claimed), "
                    "#pending = if_not_exists(#state, :claimed), "
                    "staged_key = if_not_exists(staged_key, :key), "
                    "claimed_at_ms = if_not_exists(claimed_at_ms, :now), "
                    "#since = if_not_exists(claimed_at_ms, :now), "
                    "updated_at_ms = :now, redriven_at_ms = :now REMOVE #exp"
                ),
                ConditionExpression=_NOT_FINAL,
                ExpressionAttributeNames=_PENDING_NAMES,
                ExpressionAttributeValues={
                    ":one": {"N": "1" if counted else "0"},
                    ":zero": {"N": "0"},
                    ":claimed": {"S": WindowState.CLAIMED},
                    ":parked": {"S": WindowState.PARKED},
                    ":key": {"S": staged_key},
                    ":now": {"N": str(int(now * 1000))},
                },
                ReturnValues="ALL_NEW",  # the count, also when unchanged
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as err:
            if _error_code(err) != "ConditionalCheckFailedException":
                raise
            # Final already (a late delivery won the race): nothing to count.
            return _window_record(self._final_item(err, window_id)).redrive_count
        return int(response["Attributes"]["redrive_count"]["N"])

    def pending_windows(
        self, state: WindowState, limit: int, *, since_ms: int | None = None
    ) -> list[WindowRecord]:
        """Up to `limit` windows in `state` (CLAIMED or PARKED), oldest first (by first claim),
        only those first claimed at or after `since_ms` if given.

        A Query of the sparse index `pending-windows`: it reads the windows not yet final and
        nothing else, whatever the size of the table. The index is eventually consistent: a
        window that changed state in the last second may show its old one.
        """
        if state not in (WindowState.CLAIMED, WindowState.PARKED):
            raise ValueError(f"only windows not yet final are indexed, not {state}")
        condition = "#pending = :state"
        names = {"#pending": PENDING_KEY}
        values: dict[str, Any] = {":state": {"S": state}}
        if since_ms is not None:
            condition += " AND #since >= :since"
            names["#since"] = PENDING_SINCE
            values[":since"] = {"N": str(since_ms)}
        found: list[WindowRecord] = []
        start: Mapping[str, Any] | None = None
        while len(found) < limit:
            arguments: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": PENDING_INDEX,
                "KeyConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
                "ScanIndexForward": True,
                "Limit": min(QUERY_PAGE_LIMIT, limit - len(found)),
            }
            if start is not None:
                arguments["ExclusiveStartKey"] = start
            page = self._dynamodb.query(**arguments)
            found.extend(_window_record(item) for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if start is None:
                break
        return found[:limit]

    def backfill_pending_index(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Put windows written before the index existed into it: CLAIMED or PARKED windows
        without `pending` get it (and `pending_since_ms`, and lose their TTL). A one-off
        migration after upgrading a deployment, so a Scan of the whole table, page by page
        (`progress(items scanned, windows indexed)` after each); returns the windows indexed.
        Idempotent, and safe beside running deliveries (each write is conditional on the state
        it read)."""
        indexed = scanned = 0
        start: Mapping[str, Any] | None = None
        while True:
            arguments: dict[str, Any] = {
                "TableName": self._table,
                "FilterExpression": (
                    "begins_with(pk, :win) AND #state IN (:claimed, :parked) "
                    "AND attribute_not_exists(#pending)"
                ),
                "ExpressionAttributeNames": {"#state": "state", "#pending": PENDING_KEY},
                "ExpressionAttributeValues": {
                    ":win": {"S": WINDOW_PREFIX},
                    ":claimed": {"S": WindowState.CLAIMED},
                    ":parked": {"S": WindowState.PARKED},
                },
            }
            if start is not None:
                arguments["ExclusiveStartKey"] = start
            page = self._dynamodb.scan(**arguments)
            scanned += int(page.get("ScannedCount", 0))
            for item in page.get("Items", []):
                indexed += self._index_one(item)
            if progress is not None:
                progress(scanned, indexed)
            start = page.get("LastEvaluatedKey")
            if start is None:
                return indexed

    def _index_one(self, item: Mapping[str, Any]) -> int:
        state = item["state"]["S"]
        since = item.get("claimed_at_ms") or item.get("updated_at_ms") or {"N": "0"}
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={LEDGER_KEY: item[LEDGER_KEY]},
                UpdateExpression="SET #pending = :state, #since = :since REMOVE #exp",
                ConditionExpression="#state = :state",
                ExpressionAttributeNames=_names_used("#pending #since #exp #state"),
                ExpressionAttributeValues={":state": {"S": state}, ":since": since},
            )
        except ClientError as err:
            if _error_code(err) == "ConditionalCheckFailedException":
                return 0  # its state changed meanwhile: written by current code, so indexed
            raise
        return 1

    def get_windows(
        self, window_ids: Sequence[str], *, summary: bool = False
    ) -> dict[str, WindowRecord]:
        """The records of those of `window_ids` that have one (BatchGetItem, 100 a call).

        With `summary`, only `SUMMARY_ATTRIBUTES` are read (no parts, plan or latency): what
        redrive's sweep needs of every window of an hour, run after run."""
        records: dict[str, WindowRecord] = {}
        unique = list(dict.fromkeys(window_ids))
        projection = SUMMARY_ATTRIBUTES if summary else ()
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            keys = [_window_key(w) for w in unique[start : start + BATCH_GET_LIMIT]]
            for item in self._batch_get_items(keys, projection=projection):
                record = _window_record(item)
                records[record.window_id] = record
        return records

    # -- the sweep's low-water mark ----------------------------------------------------------

    def sweep_low_water(self) -> float | None:
        """Epoch seconds of the oldest hour redrive's sweep still lists; None before the first."""
        response = self._dynamodb.get_item(
            TableName=self._table, Key={LEDGER_KEY: {"S": SWEEP_KEY}}, ConsistentRead=True
        )
        item = response.get("Item")
        return None if item is None else float(item["hour_start"]["N"])

    def set_sweep_low_water(self, hour_start: float) -> None:
        """Move the mark to `hour_start` (the sweep, forward; runs one at a time)."""
        self._dynamodb.put_item(
            TableName=self._table,
            Item={LEDGER_KEY: {"S": SWEEP_KEY}, "hour_start": {"N": str(int(hour_start))}},
        )

    def lower_sweep_low_water(self, hour_start: float) -> None:
        """Move the mark back to `hour_start` if it is past it (a window released from PARKED:
        the sweep lists its hour again and writes the hour's marker once it is delivered)."""
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={LEDGER_KEY: {"S": SWEEP_KEY}},
                UpdateExpression="SET hour_start = :h",
                ConditionExpression="attribute_exists(hour_start) AND hour_start > :h",
                ExpressionAttributeValues={":h": {"N": str(int(hour_start))}},
            )
        except ClientError as err:
            if _error_code(err) != "ConditionalCheckFailedException":
                raise

    # -- helpers --------------------------------------------------------------------------

    def _times(self, now: float) -> dict[str, dict[str, str]]:
        return {
            ":now": {"N": str(int(now * 1000))},
            ":exp": {"N": str(int(now) + self._ttl_seconds)},
        }

    def _conditional_update(
        self, window_id: str, *, update: str, condition: str, values: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Apply `update` if `condition` holds: None if applied, else the item as it was
        (empty when there is no record)."""
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=_window_key(window_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=_names_used(update + condition),
                ExpressionAttributeValues=dict(values),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as err:
            if _error_code(err) != "ConditionalCheckFailedException":
                raise
            old: dict[str, Any] | None = err.response.get("Item")  # type: ignore[assignment]  # botocore types the error Item loosely
            return old if old is not None else self._raw_window(window_id)
        return None

    def _final_item(self, err: ClientError, window_id: str) -> dict[str, Any]:
        """The item a `_NOT_FINAL` condition failed on (read again if the error lacks it)."""
        old: dict[str, Any] | None = err.response.get("Item")  # type: ignore[assignment]  # botocore types the error Item loosely
        return old if old is not None else self._raw_window(window_id)

    def _raw_window(self, window_id: str) -> dict[str, Any]:
        response = self._dynamodb.get_item(
            TableName=self._table, Key=_window_key(window_id), ConsistentRead=True
        )
        return dict(response.get("Item", {}))


_NOT_FINAL: Final = "attribute_not_exists(#state) OR #state IN (:claimed, :parked)"
_FINAL_STATES: Final = frozenset({WindowState.DELIVERED, WindowState.EMPTY})
_PENDING_NAMES: Final = {
    "#state": "state",
    "#pending": PENDING_KEY,
    "#since": PENDING_SINCE,
    "#exp": LEDGER_TTL_ATTRIBUTE,
}


def _names_used(expressions: str) -> dict[str, str]:
    """The attribute names an expression uses (DynamoDB refuses unused ones)."""
    return {name: value for name, value in _PENDING_NAMES.items() if name in expressions}


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _window_key(window_id: str) -> dict[str, Any]:
    return {LEDGER_KEY: {"S": WINDOW_PREFIX + window_id}}


def _chunk_key(window_id: str, n: int) -> dict[str, Any]:
    return {LEDGER_KEY: {"S": EXCLUSION_PREFIX + f"{window_id}#{n}"}}


def _has_exclusions(item: Mapping[str, Any]) -> bool:
    """Persisted already: as chunks, or inline (items written before chunks existed)."""
    return "exclusion_chunks" in item or "exclusions" in item


def _chunked(exclusions: Sequence[ExclusionRecord]) -> list[bytes]:
    """Gzipped JSON arrays of exclusions, at most EXCLUSION_CHUNK_BYTES of JSON each (so the
    compressed chunk is too): one binary attribute, cheap to store and to read back."""
    chunks: list[list[str]] = []
    size = EXCLUSION_CHUNK_BYTES
    for exclusion in exclusions:
        text = json.dumps(asdict(exclusion), ensure_ascii=False)
        cost = len(text.encode()) + 1
        if size + cost > EXCLUSION_CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(text)
        size += cost
    return [gzip.compress(("[" + ",".join(chunk) + "]").encode(), mtime=0) for chunk in chunks]


def _state_of(item: Mapping[str, Any]) -> str | None:
    state = item.get("state", {}).get("S")
    return None if state is None else str(state)


def _window_record(item: Mapping[str, Any]) -> WindowRecord:
    plain = {name: _deserializer.deserialize(value) for name, value in item.items()}
    return WindowRecord(
        window_id=str(plain[LEDGER_KEY]).removeprefix(WINDOW_PREFIX),
        state=WindowState(plain["state"]),
        staged_key=str(plain.get("staged_key", "")),
        exclusions=tuple(ExclusionRecord(**e) for e in plain.get("exclusions", [])),
        parts=tuple(_part(p) for p in plain.get("parts", [])),
        redrive_count=int(plain.get("redrive_count", 0)),
        claimed_at_ms=_optional_int(plain.get("claimed_at_ms")),
        updated_at_ms=int(plain.get("updated_at_ms", 0)),
        delivered_at_ms=_optional_int(plain.get("delivered_at_ms")),
        parked_reason=plain.get("parked_reason"),
        file_count=int(plain.get("file_count", 0)),
        plan={
            str(k): v if isinstance(v, str) else int(v)
            for k, v in (plain.get("plan") or {}).items()
        },
        latency=LatencyHistogram.from_item(plain.get("latency_ms") or {}),
        exclusion_count=int(plain.get("exclusion_count", len(plain.get("exclusions", [])))),
        exclusion_chunks=int(plain.get("exclusion_chunks", 0)),
        verified_parts={
            int(number): _part(part) for number, part in (plain.get("verified_parts") or {}).items()
        },
        duplicate_files=_optional_int(plain.get("duplicate_files")),
        attempted_at_ms=_optional_int(plain.get("attempted_at_ms")),
        redriven_at_ms=_optional_int(plain.get("redriven_at_ms")),
    )


def _same_bytes(recorded: Sequence[PartRecord], parts: Sequence[PartRecord]) -> bool:
    """Equal in everything but the MinIO version: the same archive, uploaded again. Under
    SSE-KMS (verified by read-back) the ETag differs on every upload of the same bytes, so there
    the sha256 and size are what say "the same"."""

    def content(part: PartRecord) -> PartRecord:
        etag = "" if part.check == "read-back" else part.etag
        return part._replace(minio_version=None, etag=etag)

    return [content(p) for p in recorded] == [content(p) for p in parts]


def _part(plain: Mapping[str, Any]) -> PartRecord:
    # TypeDeserializer gives Decimal for numbers.
    return PartRecord(
        part=int(plain["part"]),
        minio_key=str(plain["minio_key"]),
        minio_version=plain.get("minio_version"),
        sha256=str(plain["sha256"]),
        etag=str(plain["etag"]),
        size=int(plain["size"]),
        part_size=int(plain["part_size"]),
        file_count=int(plain["file_count"]),
        check=str(plain["check"]),
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
