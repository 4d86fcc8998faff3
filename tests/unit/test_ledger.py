"""Delivery's ledger (DESIGN §4a) against moto's DynamoDB, in process.

Claims are checked in the table itself, not only in what `claim_files` returns: a claim must
never be overwritten, moved or dropped. Two stand-ins cover what moto cannot do: moto applies a
transaction without a lock (see `SerializedClient`), and it always explains a cancelled
transaction and never reports conflicts or throttling (see `ScriptedClient`). And one fixture
removes a cost of moto's that has nothing to do with the ledger (`_one_table_copy_per_transaction`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import random
import threading
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb import models as moto_dynamodb

from delivery.latency import LatencyHistogram
from delivery.ledger import (
    EXCLUSION_DETAIL_MAX_CHARS,
    ExclusionRecord,
    Ledger,
    LedgerRetriesExhausted,
    PartRecord,
    WindowState,
    WindowStateError,
)
from infrastructure.local.provision import resources
from infrastructure.tunables import load_tunables
from tests.conftest import REGION

TABLE = "sluice-ledger-test"
TTL = load_tunables().delivery.ledger_ttl_seconds
MAX_REDRIVES = load_tunables().redrive.max_redrives
T0 = 1_770_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ids(count: int, start: int = 0) -> list[str]:
    return [hashlib.sha256(str(n).encode()).hexdigest() for n in range(start, start + count)]


_transaction = threading.local()


class _CopyTablesOncePerTransaction:
    """Stands in for the `copy` module inside moto's DynamoDB backend (see the fixture)."""

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        tables = getattr(_transaction, "tables", None)
        if tables is None or not isinstance(value, moto_dynamodb.Table):
            return copy.deepcopy(value, memo)
        if id(value) not in tables:
            tables[id(value)] = copy.deepcopy(value)
        return tables[id(value)]


@pytest.fixture(autouse=True)
def _one_table_copy_per_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto 5.2.5 backs a table up before a transaction, to restore it on cancellation, but
    copies the whole table again for every item of the transaction: a 100-item transaction on
    a 300-item table copies 30,000 items (~3 s here). The copies are identical (they are all
    taken before any write), so keeping the first is the same behaviour, only cheaper."""
    backend = moto_dynamodb.DynamoDBBackend
    transact = backend.transact_write_items

    def once(self: Any, transact_items: list[dict[str, Any]]) -> None:
        _transaction.tables = {}
        try:
            transact(self, transact_items)
        finally:
            _transaction.tables = None

    monkeypatch.setattr(moto_dynamodb, "copy", _CopyTablesOncePerTransaction)
    monkeypatch.setattr(backend, "transact_write_items", once)


@pytest.fixture
def dynamodb(aws: None) -> Any:
    client = boto3.client("dynamodb", region_name=REGION)
    resources.create_ledger_table(client, TABLE)
    return client


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(dynamodb: Any, clock: Clock) -> Ledger:
    return Ledger(dynamodb, TABLE, TTL, clock, sleep=no_sleep)


def no_sleep(_seconds: float) -> None:
    """Backoff is exercised, never waited for."""


def calls_of(client: Any, operation: str) -> list[dict[str, Any]]:
    """Record the parameters of every `operation` call the client makes from now on."""
    seen: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append(params)

    client.meta.events.register(f"provide-client-params.dynamodb.{operation}", record)
    return seen


def table_items(client: Any, prefix: str) -> dict[str, dict[str, Any]]:
    """Every item whose key starts with `prefix`, read straight from the table."""
    items: dict[str, dict[str, Any]] = {}
    for page in client.get_paginator("scan").paginate(TableName=TABLE, ConsistentRead=True):
        for item in page["Items"]:
            if item["pk"]["S"].startswith(prefix):
                items[item["pk"]["S"].removeprefix(prefix)] = item
    return items


def owners_in_table(client: Any) -> dict[str, str]:
    return {fid: item["owner"]["S"] for fid, item in table_items(client, "FILE#").items()}


def part(number: int = 1, version: str | None = "v1") -> PartRecord:
    return PartRecord(
        part=number,
        minio_key=f"archive/dt=2026-02-01/hour=12/w.p{number:03d}.tar.gz",
        minio_version=version,
        sha256="ab" * 32,
        etag="0123456789abcdef0123456789abcdef-2",
        size=9_000_000,
        part_size=8 * 1024 * 1024,
        file_count=3,
        check="etag",
    )


EXCLUDED = ExclusionRecord(
    file_id="f" * 64, key="p/a.json", version_id=None, reason="version-gone", detail="NoSuchVersion"
)


# -- claims -------------------------------------------------------------------------------


def test_a_window_claims_250_files_in_three_transactions(ledger: Ledger, dynamodb: Any) -> None:
    # GIVEN 250 files nobody has claimed
    files = ids(250)
    transactions = calls_of(dynamodb, "TransactWriteItems")
    # WHEN a window claims them
    owners = ledger.claim_files("w1", files)
    # THEN all are its own, claimed in transactions of at most 100 items, and the table agrees
    assert owners == dict.fromkeys(files, "w1")
    assert [len(call["TransactItems"]) for call in transactions] == [100, 100, 50]
    assert owners_in_table(dynamodb) == owners


def test_a_second_window_never_takes_a_claimed_file(
    ledger: Ledger, dynamodb: Any, clock: Clock
) -> None:
    # GIVEN window w1 owns files 0..149
    first = ids(150)
    ledger.claim_files("w1", first)
    before = table_items(dynamodb, "FILE#")
    # WHEN, later, window w2 claims files 100..249 (50 of them w1's)
    clock.now += 60
    second = ids(150, start=100)
    owners = ledger.claim_files("w2", second)
    # THEN the overlap stays w1's, the rest are w2's, in the result and in the table
    overlap = set(first) & set(second)
    assert len(overlap) == 50
    assert owners == {fid: "w1" if fid in overlap else "w2" for fid in second}
    after = table_items(dynamodb, "FILE#")
    assert {fid: after[fid] for fid in first} == before  # w1's claims not touched at all
    assert owners_in_table(dynamodb) == {**dict.fromkeys(first, "w1"), **owners}


def test_a_window_retrying_keeps_its_claims(ledger: Ledger, dynamodb: Any, clock: Clock) -> None:
    # GIVEN window w1 claimed its files, and w2 took a few others first
    files = ids(120)
    ledger.claim_files("w2", files[:5])
    ledger.claim_files("w1", files)
    w2_before = table_items(dynamodb, "FILE#")
    # WHEN w1 is retried an hour later and claims the same files again
    clock.now += 3600
    owners = ledger.claim_files("w1", files)
    # THEN it owns exactly what it owned (its claims refreshed), and w2's claims are untouched
    assert owners == {fid: "w2" if fid in files[:5] else "w1" for fid in files}
    after = table_items(dynamodb, "FILE#")
    assert owners_in_table(dynamodb) == owners
    assert {fid: after[fid] for fid in files[:5]} == {fid: w2_before[fid] for fid in files[:5]}
    assert {after[fid]["claimed_at_ms"]["N"] for fid in files[5:]} == {str(int(clock.now * 1000))}


def test_repeated_ids_are_claimed_once(ledger: Ledger, dynamodb: Any) -> None:
    # GIVEN a list naming some files twice (a transaction may not touch an item twice)
    files = ids(3)
    # WHEN it is claimed
    owners = ledger.claim_files("w1", [files[0], files[1], files[0], files[2], files[1]])
    # THEN each file is claimed once, and every id given has its owner
    assert owners == dict.fromkeys(files, "w1")
    assert owners_in_table(dynamodb) == owners


def test_moto_explains_a_cancelled_transaction(ledger: Ledger, dynamodb: Any) -> None:
    """The claim path relies on CancellationReasons carrying the current owner (ALL_OLD)."""
    # GIVEN w1 owns a file
    fid = ids(1)[0]
    ledger.claim_files("w1", [fid])
    reads = calls_of(dynamodb, "BatchGetItem")
    transactions = calls_of(dynamodb, "TransactWriteItems")
    # WHEN w2 claims it with two free files
    owners = ledger.claim_files("w2", [*ids(1, start=1), fid, *ids(1, start=2)])
    # THEN the owner came back with the cancellation: no read, and one retry for the free two
    assert owners[fid] == "w1"
    assert reads == []
    assert [len(call["TransactItems"]) for call in transactions] == [3, 2]


class SerializedClient:
    """The moto client, one request at a time, as DynamoDB applies each request atomically.

    moto applies TransactWriteItems as check-then-write over a copy of the table that it puts
    back on cancellation, without a lock: two threads' transactions can overwrite each other,
    which DynamoDB (whose transactions are serializable) never does. Serialising requests keeps
    every interleaving between them — which is where the ledger's races are.
    """

    def __init__(self, client: Any, lock: threading.Lock) -> None:
        self._client = client
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        return call


def test_concurrent_windows_agree_on_one_owner_per_file(dynamodb: Any, clock: Clock) -> None:
    # GIVEN two windows with 120 files in common, each running as four concurrent attempts
    common = ids(120)
    lock = threading.Lock()
    windows = {"w1": common + ids(30, start=1000), "w2": ids(30, start=2000) + common}
    results: dict[tuple[str, int], dict[str, str]] = {}
    start = threading.Barrier(8)

    def attempt(window: str, n: int) -> None:
        files = list(windows[window])
        random.Random(n).shuffle(files)  # each attempt claims in its own order
        ledger = Ledger(SerializedClient(dynamodb, lock), TABLE, TTL, clock, sleep=no_sleep)  # type: ignore[arg-type]  # a stand-in, not a DynamoDBClient
        start.wait()
        results[(window, n)] = ledger.claim_files(window, files)

    # WHEN all eight claim at once
    threads = [threading.Thread(target=attempt, args=(w, n)) for w in windows for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN every file has exactly one owner, and every attempt's answer is the table's
    table = owners_in_table(dynamodb)
    assert set(table) == set(windows["w1"]) | set(windows["w2"])
    assert len(results) == 8
    for (window, _), owners in results.items():
        assert owners == {fid: table[fid] for fid in windows[window]}
    assert {table[fid] for fid in ids(30, start=1000)} == {"w1"}
    assert {table[fid] for fid in ids(30, start=2000)} == {"w2"}


class ScriptedClient:
    """A DynamoDB stand-in for what moto cannot produce: a TransactionCanceledException with
    no CancellationReasons, and conflicts or throttling (moto never reports them).

    It keeps claims in a dict, applies a transaction's conditions as DynamoDB would, and raises
    the scripted errors first, one per transaction call.
    """

    def __init__(self, script: list[str] | None = None) -> None:
        self.owners: dict[str, str] = {}
        self.script = list(script or [])
        self.transactions: list[list[str]] = []
        self.reads: list[list[str]] = []

    def transact_write_items(
        self, TransactItems: list[dict[str, Any]]
    ) -> dict[str, Any]:  # boto3's parameter name
        keys = [item["Put"]["Item"]["pk"]["S"] for item in TransactItems]
        window = TransactItems[0]["Put"]["ExpressionAttributeValues"][":w"]["S"]
        self.transactions.append(keys)
        if self.script:
            raise _client_error(self.script.pop(0))
        if any(self.owners.get(key, window) != window for key in keys):
            raise _client_error("TransactionCanceledException")  # no reasons given
        self.owners.update(dict.fromkeys(keys, window))
        return {}

    def batch_get_item(
        self, RequestItems: dict[str, Any]
    ) -> dict[str, Any]:  # boto3's parameter name
        keys = [key["pk"]["S"] for key in RequestItems[TABLE]["Keys"]]
        self.reads.append(keys)
        found = [{"pk": {"S": k}, "owner": {"S": self.owners[k]}} for k in keys if k in self.owners]
        return {"Responses": {TABLE: found}, "UnprocessedKeys": {}}


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "TransactWriteItems")


def scripted_ledger(client: ScriptedClient) -> Ledger:
    return Ledger(client, TABLE, TTL, Clock(), sleep=no_sleep)  # type: ignore[arg-type]  # a stand-in, not a DynamoDBClient


def test_a_cancellation_without_reasons_reads_the_owners() -> None:
    # GIVEN w1 owns two of five files, and DynamoDB gives no reasons when it cancels
    client = ScriptedClient()
    files = ids(5)
    client.owners.update({f"FILE#{files[1]}": "w1", f"FILE#{files[3]}": "w1"})
    # WHEN w2 claims all five
    owners = scripted_ledger(client).claim_files("w2", files)
    # THEN it read the owners of that transaction's files and retried only the unowned ones
    assert owners == {fid: "w1" if fid in (files[1], files[3]) else "w2" for fid in files}
    assert client.reads == [[f"FILE#{fid}" for fid in files]]
    assert client.transactions[1] == [f"FILE#{fid}" for fid in (files[0], files[2], files[4])]


def test_conflicts_and_throttling_are_retried() -> None:
    # GIVEN DynamoDB answers with a conflict, then throttling, then accepts
    client = ScriptedClient(["TransactionConflictException", "ThrottlingException"])
    # WHEN a window claims
    owners = scripted_ledger(client).claim_files("w1", ids(3))
    # THEN the third attempt claimed them all
    assert set(owners.values()) == {"w1"}
    assert len(client.transactions) == 3


def test_endless_conflicts_end_in_an_error() -> None:
    # GIVEN DynamoDB never stops reporting conflicts
    client = ScriptedClient(["TransactionConflictException"] * 100)
    # WHEN a window claims, THEN it gives up after a bounded number of attempts
    with pytest.raises(LedgerRetriesExhausted, match="w1"):
        scripted_ledger(client).claim_files("w1", ids(3))
    assert len(client.transactions) == 8


def test_other_errors_are_not_retried() -> None:
    # GIVEN a request DynamoDB refuses outright
    client = ScriptedClient(["ValidationException"])
    # WHEN a window claims, THEN the error is raised at once
    with pytest.raises(ClientError, match="ValidationException"):
        scripted_ledger(client).claim_files("w1", ids(3))
    assert len(client.transactions) == 1


# -- owners -------------------------------------------------------------------------------


def test_owners_pages_over_more_than_100_ids(ledger: Ledger, dynamodb: Any) -> None:
    # GIVEN 180 claimed files (two windows) and 70 never claimed
    ledger.claim_files("w1", ids(90))
    ledger.claim_files("w2", ids(90, start=90))
    reads = calls_of(dynamodb, "BatchGetItem")
    # WHEN the owners of all 250 are asked for
    owners = ledger.owners(ids(250))
    # THEN claimed ones are answered (100 keys a call, consistently) and unclaimed are absent
    assert owners == {**dict.fromkeys(ids(90), "w1"), **dict.fromkeys(ids(90, start=90), "w2")}
    assert [len(call["RequestItems"][TABLE]["Keys"]) for call in reads] == [100, 100, 50]
    assert all(call["RequestItems"][TABLE]["ConsistentRead"] for call in reads)


# -- windows ------------------------------------------------------------------------------


def test_begin_persists_the_first_exclusions(ledger: Ledger, clock: Clock) -> None:
    # GIVEN a window begun with one exclusion
    first = ledger.begin("w1", "buffers/w1.json.gz", [EXCLUDED])
    # WHEN a retry begins it with other exclusions
    clock.now += 60
    other = ExclusionRecord(file_id="e" * 64, key=None, version_id="v", reason="x", detail="y")
    again = ledger.begin("w1", "buffers/w1.json.gz", [other])
    # THEN the first exclusions win, and the record is unchanged but for when an attempt last
    # began (redrive's sign that the window is being worked on)
    assert first.state is WindowState.CLAIMED
    assert first.exclusions == (EXCLUDED,)
    assert again == dataclasses.replace(first, attempted_at_ms=int(clock.now * 1000))
    assert ledger.get_window("w1") == again


def test_a_window_with_100000_exclusions_keeps_a_small_item(ledger: Ledger, dynamodb: Any) -> None:
    # GIVEN 100,000 exclusions with 1 KB keys and details far over the cap (a window whose
    # every line is bad: inline in the window item this is ~200 MB, past the 400 KB limit)
    many = [
        ExclusionRecord(
            file_id=f"{n:064x}", key="k" * 1024, version_id="v", reason="schema", detail="d" * 5000
        )
        for n in range(100_000)
    ]
    # WHEN the window begins with them, and a later part adds one more
    ledger.begin("w1", "buffers/w1.json.gz", many)
    late = ExclusionRecord(file_id="f" * 64, key="late", version_id="v", reason="gone", detail="")
    ledger.add_exclusions("w1", [late])
    # THEN the window item stays small, the exclusions live in chunk items of bounded size,
    # every one comes back in order with its detail capped, and the count is kept
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "WIN#w1"}})["Item"]
    assert len(str(item)) < 4_000
    record = ledger.get_window("w1")
    assert record is not None
    assert record.exclusion_count == 100_001
    assert [x.file_id for x in record.exclusions] == [x.file_id for x in many] + [late.file_id]
    assert all(len(x.detail) == EXCLUSION_DETAIL_MAX_CHARS for x in record.exclusions[:-1])
    assert record.exclusion_chunks == int(item["exclusion_chunks"]["N"]) > 100
    chunk = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "EXCL#w1#0"}})["Item"]
    assert len(chunk["gz"]["B"]) < 400_000
    assert "expires_at" not in chunk  # kept while the window is not final


def test_a_delivered_windows_exclusion_chunks_expire_with_it(
    ledger: Ledger, dynamodb: Any, clock: Clock
) -> None:
    # GIVEN a window with exclusions in a chunk
    ledger.begin("w1", "buffers/w1.json.gz", [EXCLUDED])
    # WHEN it is delivered
    ledger.mark_delivered("w1", [part()], file_count=3)
    # THEN its chunk carries the window's TTL
    chunk = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "EXCL#w1#0"}})["Item"]
    assert int(chunk["expires_at"]["N"]) == int(clock.now) + TTL


def test_a_summary_read_holds_state_and_times_but_not_parts(ledger: Ledger) -> None:
    # GIVEN a delivered window (parts, plan, latency) and a claimed one
    ledger.begin("w1", "buffers/w1.json.gz", [], {"gzip_level": 2})
    ledger.mark_delivered("w1", [part()], file_count=3)
    ledger.begin("w2", "buffers/w2.json.gz", [])
    # WHEN both are read as summaries (redrive's sweep, every run) and in full
    summary = ledger.get_windows(["w1", "w2"], summary=True)
    whole = ledger.get_windows(["w1", "w2"])
    # THEN the summary has what the sweep decides on, and none of the parts or plan
    assert {w: r.state for w, r in summary.items()} == {
        "w1": WindowState.DELIVERED,
        "w2": WindowState.CLAIMED,
    }
    assert summary["w1"].file_count == 3
    assert summary["w2"].attempted_at_ms == whole["w2"].attempted_at_ms is not None
    assert (summary["w1"].parts, summary["w1"].plan) == ((), {})
    assert whole["w1"].parts == (part(),)


def test_verified_parts_are_remembered_until_the_window_is_delivered(ledger: Ledger) -> None:
    # GIVEN a window with parts 1 and 3 verified in the incoming area
    ledger.begin("w1", "buffers/w1.json.gz", [])
    ledger.record_verified_part("w1", part())
    ledger.record_verified_part("w1", part()._replace(part=3))
    # WHEN it is read again (a retry, a continuation)
    record = ledger.get_window("w1")
    # THEN both are there by number; delivery clears them
    assert record is not None
    assert sorted(record.verified_parts) == [1, 3]
    assert record.verified_parts[1] == part()
    ledger.mark_delivered("w1", [part()], file_count=3)
    delivered = ledger.get_window("w1")
    assert delivered is not None
    assert delivered.verified_parts == {}


def test_a_part_cannot_be_recorded_for_a_window_not_begun(ledger: Ledger) -> None:
    # GIVEN no record of the window
    # WHEN a part is recorded
    # THEN it is refused: progress belongs to a begun window
    with pytest.raises(WindowStateError, match="record a verified part"):
        ledger.record_verified_part("w-none", part())


def test_begin_never_reopens_a_finished_window(ledger: Ledger) -> None:
    # GIVEN a delivered window
    ledger.begin("w1", "buffers/w1.json.gz", [])
    ledger.mark_delivered("w1", [part()], file_count=3)
    # WHEN a late retry begins it
    record = ledger.begin("w1", "buffers/w1.json.gz", [EXCLUDED])
    # THEN it is still DELIVERED, with its parts and no new exclusions
    assert record.state is WindowState.DELIVERED
    assert record.parts == (part(),)
    assert record.exclusions == ()


def test_begin_after_a_redrive_created_the_record_persists_exclusions(ledger: Ledger) -> None:
    # GIVEN redrive recorded a window that no attempt had begun
    assert ledger.record_redrive("w1", "buffers/w1.json.gz") == 1
    # WHEN the attempt begins it
    record = ledger.begin("w1", "buffers/w1.json.gz", [EXCLUDED])
    # THEN its exclusions are persisted and the redrive count kept
    assert record.exclusions == (EXCLUDED,)
    assert record.redrive_count == 1
    assert record.state is WindowState.CLAIMED


def test_a_window_is_delivered_once_and_marking_again_is_harmless(
    ledger: Ledger, clock: Clock
) -> None:
    # GIVEN a begun window
    ledger.begin("w1", "buffers/w1.json.gz", [])
    parts = [part(1), part(2, version=None)]
    # WHEN it is marked delivered, and a retry marks it again with the same parts
    clock.now += 5
    ledger.mark_delivered("w1", parts, file_count=6)
    clock.now += 5
    ledger.mark_delivered("w1", parts, file_count=6)
    # THEN it is DELIVERED with those parts, at the first marking's time
    record = ledger.get_window("w1")
    assert record is not None
    assert record.state is WindowState.DELIVERED
    assert record.parts == tuple(parts)
    assert record.file_count == 6
    assert record.delivered_at_ms == int((T0 + 5) * 1000)


def test_the_first_deliverys_latency_is_kept(ledger: Ledger) -> None:
    # GIVEN a window delivered with its files' latencies
    ledger.begin("w1", "buffers/w1.json.gz", [])
    first = LatencyHistogram.of([61_200, 62_000, 75_500])
    ledger.mark_delivered("w1", [part()], file_count=3, latency=first)
    # WHEN a retry marks it delivered again, later
    ledger.mark_delivered("w1", [part()], file_count=3, latency=LatencyHistogram.of([900_000] * 3))
    # THEN the ledger keeps the first delivery's histogram
    record = ledger.get_window("w1")
    assert record is not None
    assert record.latency == first
    assert record.latency.counts == {62_000: 2, 76_000: 1}


def test_a_settled_window_keeps_the_duplicates_it_dropped(ledger: Ledger) -> None:
    # GIVEN a window delivered dropping 2 copies, and one found empty dropping 3; a third begun
    ledger.begin("w1", "buffers/w1.json.gz", [])
    ledger.mark_delivered("w1", [part()], file_count=3, duplicates=2)
    ledger.mark_empty("w2", "buffers/w2.json.gz", duplicates=3)
    ledger.begin("w3", "buffers/w3.json.gz", [])
    # WHEN retries settle the first two again
    ledger.mark_delivered("w1", [part()], file_count=3, duplicates=2)
    ledger.mark_empty("w2", "buffers/w2.json.gz", duplicates=3)
    # THEN each keeps its count; the window not settled has none yet
    records = ledger.get_windows(["w1", "w2", "w3"])
    assert {w: r.duplicate_files for w, r in records.items()} == {"w1": 2, "w2": 3, "w3": None}


def test_the_same_bytes_uploaded_again_record_the_new_version(ledger: Ledger) -> None:
    # GIVEN a delivered window whose object went missing from MinIO and was uploaded again
    ledger.begin("w1", "buffers/w1.json.gz", [])
    ledger.mark_delivered("w1", [part(version="v1")], file_count=3)
    # WHEN the rebuild marks it delivered with the new MinIO version
    ledger.mark_delivered("w1", [part(version="v2")], file_count=3)
    # THEN the record points at the new version
    record = ledger.get_window("w1")
    assert record is not None
    assert record.parts == (part(version="v2"),)


def test_a_kms_target_rebuild_with_a_new_etag_is_the_same_bytes(ledger: Ledger) -> None:
    # GIVEN a window delivered to an SSE-KMS target (checked by read-back; ETags are not MD5s)
    ledger.begin("w1", "buffers/w1.json.gz", [])
    first = part()._replace(check="read-back", etag="kms-etag-1")
    ledger.mark_delivered("w1", [first], file_count=3)
    # WHEN a rebuild of the same bytes gets another ETag and version
    again = first._replace(etag="kms-etag-2", minio_version="v2")
    ledger.mark_delivered("w1", [again], file_count=3)
    # THEN it is accepted as the same archive, and the new object is recorded
    record = ledger.get_window("w1")
    assert record is not None
    assert record.parts == (again,)


def test_other_parts_on_a_delivered_window_are_refused(ledger: Ledger) -> None:
    # GIVEN a delivered window
    ledger.begin("w1", "buffers/w1.json.gz", [])
    ledger.mark_delivered("w1", [part()], file_count=3)
    # WHEN something marks it delivered with different bytes, THEN that is refused
    other = part()._replace(sha256="cd" * 32)
    with pytest.raises(WindowStateError, match="window w1: cannot mark DELIVERED"):
        ledger.mark_delivered("w1", [other], file_count=3)


@pytest.mark.parametrize("setup", ["none", "empty"])
def test_marking_delivered_from_a_wrong_state_names_the_window(ledger: Ledger, setup: str) -> None:
    # GIVEN a window with no record, or one that is EMPTY
    if setup == "empty":
        ledger.mark_empty("w9", "buffers/w9.json.gz")
    # WHEN it is marked delivered, THEN the error names the window and what it found
    found = "no record" if setup == "none" else "state EMPTY"
    with pytest.raises(WindowStateError, match=f"window w9: cannot mark DELIVERED: it has {found}"):
        ledger.mark_delivered("w9", [part()], file_count=3)


def test_a_window_owning_nothing_is_empty(ledger: Ledger) -> None:
    # GIVEN a begun window that turned out to own no file
    ledger.begin("w1", "buffers/w1.json.gz", [])
    # WHEN it is marked empty, twice (a retry)
    ledger.mark_empty("w1", "buffers/w1.json.gz")
    ledger.mark_empty("w1", "buffers/w1.json.gz")
    # THEN it is EMPTY; a window with no record can be marked EMPTY directly too
    ledger.mark_empty("w2", "buffers/w2.json.gz")
    for window in ("w1", "w2"):
        record = ledger.get_window(window)
        assert record is not None
        assert record.state is WindowState.EMPTY
        assert record.staged_key == f"buffers/{window}.json.gz"


def test_a_delivered_window_cannot_become_empty(ledger: Ledger) -> None:
    ledger.begin("w1", "buffers/w1.json.gz", [])
    ledger.mark_delivered("w1", [part()], file_count=3)
    with pytest.raises(WindowStateError, match="window w1: cannot mark EMPTY"):
        ledger.mark_empty("w1", "buffers/w1.json.gz")


def test_redrives_count_up_to_parking_and_unpark_resets(ledger: Ledger) -> None:
    # GIVEN a window that keeps failing; redrive counts each replay
    ledger.begin("w1", "buffers/w1.json.gz", [EXCLUDED])
    counts = [ledger.record_redrive("w1", "buffers/w1.json.gz") for _ in range(MAX_REDRIVES)]
    # WHEN the count reaches the maximum, redrive parks it
    assert counts == list(range(1, MAX_REDRIVES + 1))
    ledger.mark_parked("w1", f"redriven {MAX_REDRIVES} times")
    parked = ledger.get_window("w1")
    assert parked is not None
    assert parked.state is WindowState.PARKED
    assert parked.parked_reason == f"redriven {MAX_REDRIVES} times"
    assert parked.exclusions == (EXCLUDED,)
    # THEN the operator's unpark puts it back to CLAIMED with the count reset
    ledger.unpark("w1")
    record = ledger.get_window("w1")
    assert record is not None
    assert (record.state, record.redrive_count, record.parked_reason) == (
        WindowState.CLAIMED,
        0,
        None,
    )
    assert record.exclusions == (EXCLUDED,)


def test_a_verified_delivery_lands_on_a_parked_window(ledger: Ledger) -> None:
    # GIVEN a window parked while its last attempt was still uploading
    ledger.begin("w1", "buffers/w1.json.gz", [])
    ledger.mark_parked("w1", "redriven 5 times")
    # WHEN that attempt verifies and marks it delivered
    ledger.mark_delivered("w1", [part()], file_count=3)
    # THEN it is DELIVERED (the archive is in MinIO) and no longer carries a parking reason
    record = ledger.get_window("w1")
    assert record is not None
    assert (record.state, record.parked_reason) == (WindowState.DELIVERED, None)


@pytest.mark.parametrize("final", [WindowState.DELIVERED, WindowState.EMPTY])
def test_parking_a_finished_window_is_a_no_op(ledger: Ledger, final: WindowState) -> None:
    # GIVEN a window already DELIVERED or EMPTY (redrive raced a late success)
    ledger.begin("w1", "buffers/w1.json.gz", [])
    if final is WindowState.DELIVERED:
        ledger.mark_delivered("w1", [part()], file_count=3)
    else:
        ledger.mark_empty("w1", "buffers/w1.json.gz")
    before = ledger.get_window("w1")
    # WHEN redrive parks it, THEN nothing changes and nothing is raised
    ledger.mark_parked("w1", "redriven 5 times")
    assert ledger.get_window("w1") == before


def test_parking_or_unparking_needs_the_right_state(ledger: Ledger) -> None:
    with pytest.raises(WindowStateError, match="window w1: cannot park: it has no record"):
        ledger.mark_parked("w1", "why")
    ledger.begin("w1", "buffers/w1.json.gz", [])
    with pytest.raises(WindowStateError, match="window w1: cannot unpark: it has state CLAIMED"):
        ledger.unpark("w1")


def test_pending_windows_finds_claimed_and_parked_oldest_first(
    ledger: Ledger, clock: Clock
) -> None:
    # GIVEN windows in each state, claimed a second apart, and file claims in the same table
    ledger.claim_files("w1", ids(20))
    for window in ("w1", "w2", "w3"):
        ledger.begin(window, f"buffers/{window}.json.gz", [])
        clock.now += 1
    ledger.mark_delivered("w1", [part()], file_count=3)
    ledger.record_redrive("w4", "buffers/w4.json.gz")
    ledger.mark_parked("w4", "redriven 5 times")
    ledger.mark_empty("w5", "buffers/w5.json.gz")
    # WHEN the windows not yet final are listed by state
    claimed = ledger.pending_windows(WindowState.CLAIMED, limit=10)
    # THEN each state gives its windows, oldest first, up to the limit ...
    assert [r.window_id for r in claimed] == ["w2", "w3"]
    assert [r.window_id for r in ledger.pending_windows(WindowState.CLAIMED, limit=1)] == ["w2"]
    assert [r.window_id for r in ledger.pending_windows(WindowState.PARKED, 10)] == ["w4"]
    # ... only those first claimed since a time, if asked
    since = int(claimed[1].claimed_at_ms or 0)
    assert [
        r.window_id for r in ledger.pending_windows(WindowState.CLAIMED, 10, since_ms=since)
    ] == ["w3"]
    # ... and final windows are not indexed at all
    with pytest.raises(ValueError, match="not yet final"):
        ledger.pending_windows(WindowState.DELIVERED, 10)


def test_the_index_holds_only_windows_not_yet_final(ledger: Ledger, dynamodb: Any) -> None:
    # GIVEN a window through every transition, and a late retry of a delivered one
    ledger.begin("w1", "buffers/w1.json.gz", [])
    ledger.record_redrive("w1", "buffers/w1.json.gz")
    ledger.mark_parked("w1", "redriven 5 times")
    parked = table_items(dynamodb, "WIN#")["w1"]
    ledger.unpark("w1")
    unparked = table_items(dynamodb, "WIN#")["w1"]
    ledger.mark_delivered("w1", [part()], file_count=3)
    assert ledger.begin("w1", "buffers/w1.json.gz", []).state is WindowState.DELIVERED
    assert ledger.record_redrive("w1", "buffers/w1.json.gz") == 0
    delivered = table_items(dynamodb, "WIN#")["w1"]
    # THEN the index key follows the state while the window is open, and is gone once final
    assert parked["pending"]["S"] == "PARKED"
    assert unparked["pending"]["S"] == "CLAIMED"
    assert parked["pending_since_ms"] == unparked["pending_since_ms"] == parked["claimed_at_ms"]
    assert "pending" not in delivered
    assert "pending_since_ms" not in delivered
    assert delivered["state"]["S"] == "DELIVERED"


def test_windows_written_before_the_index_are_backfilled_into_it(
    ledger: Ledger, dynamodb: Any
) -> None:
    # GIVEN windows as the code before the index wrote them: CLAIMED and PARKED with a TTL and
    # no `pending`, a DELIVERED one, and a window written by today's code
    for window, state in (("old1", "CLAIMED"), ("old2", "PARKED"), ("old3", "DELIVERED")):
        dynamodb.put_item(
            TableName=TABLE,
            Item={
                "pk": {"S": f"WIN#{window}"},
                "state": {"S": state},
                "staged_key": {"S": f"buffers/{window}.json.gz"},
                "claimed_at_ms": {"N": "1000"},
                "updated_at_ms": {"N": "2000"},
                "redrive_count": {"N": "0"},
                "exclusions": {"L": []},
                "expires_at": {"N": "99"},
            },
        )
    ledger.begin("new", "buffers/new.json.gz", [])
    assert ledger.pending_windows(WindowState.CLAIMED, 10)[0].window_id == "new"
    progress: list[tuple[int, int]] = []
    # WHEN the index is backfilled, twice
    first = ledger.backfill_pending_index(lambda scanned, done: progress.append((scanned, done)))
    again = ledger.backfill_pending_index()
    # THEN the two open windows are in the index (oldest first) without a TTL, once; the
    # delivered one is not, and progress was reported
    assert (first, again) == (2, 0)
    claimed = [r.window_id for r in ledger.pending_windows(WindowState.CLAIMED, 10)]
    assert claimed == ["old1", "new"]
    assert [r.window_id for r in ledger.pending_windows(WindowState.PARKED, 10)] == ["old2"]
    windows = table_items(dynamodb, "WIN#")
    assert "expires_at" not in windows["old1"]
    assert "expires_at" not in windows["old2"]
    assert "pending" not in windows["old3"]
    assert progress[-1] == (4, 2)


def test_reading_many_windows_takes_one_request_per_100(ledger: Ledger, dynamodb: Any) -> None:
    # GIVEN 250 windows, and 10 ids with no record
    names = [f"w{n:03d}" for n in range(250)]
    for name in names:
        ledger.record_redrive(name, f"buffers/{name}.json.gz")
    calls: list[int] = []
    real = dynamodb.batch_get_item

    def counted(**kwargs: Any) -> Any:
        calls.append(len(kwargs["RequestItems"][TABLE]["Keys"]))
        return real(**kwargs)

    dynamodb.batch_get_item = counted
    # WHEN they are read together
    records = ledger.get_windows([*names, *(f"missing{n}" for n in range(10))])
    # THEN every window with a record comes back, in three BatchGetItem calls
    assert sorted(records) == names
    assert calls == [100, 100, 60]


# -- TTL ----------------------------------------------------------------------------------


def test_claims_and_final_windows_expire_and_open_windows_never_do(
    ledger: Ledger, dynamodb: Any, clock: Clock
) -> None:
    # GIVEN claims and windows in every state
    ledger.claim_files("w1", ids(10))
    ledger.claim_files("w2", ids(10, start=5))
    ledger.begin("w1", "buffers/w1.json.gz", [EXCLUDED])
    ledger.mark_delivered("w1", [part()], file_count=10)
    ledger.mark_empty("w2", "buffers/w2.json.gz")
    ledger.record_redrive("w3", "buffers/w3.json.gz")
    ledger.mark_parked("w3", "redriven 5 times")
    ledger.begin("w4", "buffers/w4.json.gz", [])
    # THEN the table's TTL attribute is expires_at; claims and final windows carry it, ≥ now +
    # TTL, and windows not yet delivered carry none: a parked window ignored for weeks stays
    ttl = dynamodb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert (ttl["AttributeName"], ttl["TimeToLiveStatus"]) == ("expires_at", "ENABLED")
    claims = table_items(dynamodb, "FILE#")
    windows = table_items(dynamodb, "WIN#")
    assert len(claims) == 15
    final = [claims[f] for f in claims] + [windows["w1"], windows["w2"]]
    assert all(int(item["expires_at"]["N"]) >= int(clock.now) + TTL for item in final)
    assert "expires_at" not in windows["w3"]
    assert "expires_at" not in windows["w4"]
