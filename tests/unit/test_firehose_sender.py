"""transform/firehose_sender.py: chunking, partial failures, retries, backoff and the budget.

Time is fake: `sleep` records its delays and advances a fake monotonic clock, jitter is fixed,
so every schedule is exact and nothing waits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectionError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from transform.firehose_sender import (
    MAX_BYTES_PER_CALL,
    MAX_RECORD_BYTES,
    MAX_RECORDS_PER_CALL,
    FirehoseSender,
    OutgoingRecord,
    RetryPolicy,
    SendOutcome,
)

STREAM = "sluice-test-0"
OTHER_STREAM = "sluice-test-1"

Response = dict[str, Any]
Answer = BaseException | Callable[[str, list[bytes]], Response] | None
"""One scripted answer: raise this, compute the response from (stream, data), or None: all Ok."""


@dataclass
class Call:
    stream: str
    data: list[bytes]


@dataclass
class FakeTime:
    """A monotonic clock that only moves when the sender sleeps (or a fake call takes time)."""

    now: float = 1_000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedFirehose:
    """Stands in for a boto3 Firehose client's put_record_batch.

    moto's Firehose accepts every record and cannot be made to fail chosen entries, throttle or
    answer malformed responses on demand, so this fake answers each call from a script (one answer
    per call, in order; all Ok once the script runs out) and records every call it received.
    `call_seconds` makes each call take that long on the fake clock.
    """

    def __init__(
        self, script: Sequence[Answer] = (), time: FakeTime | None = None, call_seconds: float = 0
    ) -> None:
        self.script = list(script)
        self.calls: list[Call] = []
        self.time = time
        self.call_seconds = call_seconds

    def put_record_batch(self, *, DeliveryStreamName: str, Records: Any) -> Response:
        assert set().union(*(record.keys() for record in Records)) <= {"Data"}
        data = [record["Data"] for record in Records]
        self.calls.append(Call(DeliveryStreamName, data))
        if self.time is not None:
            self.time.now += self.call_seconds
        answer = self.script.pop(0) if self.script else None
        if isinstance(answer, BaseException):
            raise answer
        if answer is None:
            return all_ok(DeliveryStreamName, data)
        return answer(DeliveryStreamName, data)


def all_ok(stream: str, data: list[bytes]) -> Response:
    return {
        "FailedPutCount": 0,
        "Encrypted": False,
        "RequestResponses": [{"RecordId": f"{stream}-{i}"} for i in range(len(data))],
    }


def fail_entries(
    *indexes: int, code: str = "ServiceUnavailableException", message: str = "Slow down."
) -> Callable[[str, list[bytes]], Response]:
    """A response in which the entries at `indexes` failed, as Firehose reports it."""

    def answer(stream: str, data: list[bytes]) -> Response:
        entries: list[dict[str, str]] = []
        for i in range(len(data)):
            if i in indexes:
                entries.append({"ErrorCode": code, "ErrorMessage": message})
            else:
                entries.append({"RecordId": f"{stream}-{i}"})
        return {"FailedPutCount": len(indexes), "Encrypted": False, "RequestResponses": entries}

    return answer


def fail_all(code: str = "ServiceUnavailableException", message: str = "Slow down.") -> Any:
    def answer(stream: str, data: list[bytes]) -> Response:
        return fail_entries(*range(len(data)), code=code, message=message)(stream, data)

    return answer


def entries_short_by_one(stream: str, data: list[bytes]) -> Response:
    response = all_ok(stream, data)
    response["RequestResponses"].pop()
    return response


def client_error(code: str, message: str = "boom") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "PutRecordBatch")


def records(
    count: int, stream: str = STREAM, size: int = 10, prefix: str = "f"
) -> list[OutgoingRecord]:
    """`count` records with distinct tokens and distinct data of `size` bytes."""
    result = []
    for i in range(count):
        token = f"{prefix}{i:05d}"
        data = (token.encode() * (size // len(token) + 1))[:size]
        result.append(OutgoingRecord(token=token, stream=stream, data=data))
    return result


def sender(
    client: ScriptedFirehose,
    time: FakeTime,
    *,
    max_attempts: int = 5,
    budget: float = 100.0,
    base: float = 0.1,
    cap: float = 5.0,
    jitter: float = 1.0,
) -> FirehoseSender:
    return FirehoseSender(
        client,
        RetryPolicy(
            max_attempts=max_attempts,
            budget_seconds=budget,
            backoff_base_seconds=base,
            backoff_cap_seconds=cap,
        ),
        sleep=time.sleep,
        clock=time.clock,
        jitter=lambda: jitter,
    )


def assert_accounted(outcome: SendOutcome, sent_records: Sequence[OutgoingRecord]) -> None:
    """Nothing lost, nothing counted twice: sent and failed partition the tokens."""
    tokens = {record.token for record in sent_records}
    assert outcome.sent | set(outcome.failed) == tokens
    assert not outcome.sent & set(outcome.failed)


# --------------------------------------------------------------------------- chunking


def test_happy_path_is_one_call_with_the_records_in_order() -> None:
    # GIVEN three small records and a Firehose that accepts everything
    time = FakeTime()
    client = ScriptedFirehose()
    batch = records(3)

    # WHEN sent
    outcome = sender(client, time).send(batch)

    # THEN one call carries exactly their bytes, in order, and nothing waits
    assert client.calls == [Call(STREAM, [r.data for r in batch])]
    assert outcome.sent == {r.token for r in batch}
    assert outcome.failed == {}
    assert outcome.calls == 1
    assert time.sleeps == []
    assert_accounted(outcome, batch)


def test_nothing_to_send_makes_no_call() -> None:
    time = FakeTime()
    client = ScriptedFirehose()
    outcome = sender(client, time).send([])
    assert client.calls == []
    assert outcome == SendOutcome()


def test_calls_hold_at_most_500_records() -> None:
    # GIVEN 1,201 small records for one stream
    time = FakeTime()
    client = ScriptedFirehose()
    batch = records(1201)

    # WHEN sent
    outcome = sender(client, time).send(batch)

    # THEN they go in calls of 500, 500 and 201, in order
    assert [len(call.data) for call in client.calls] == [500, 500, 201]
    assert max(len(call.data) for call in client.calls) <= MAX_RECORDS_PER_CALL
    assert [d for call in client.calls for d in call.data] == [r.data for r in batch]
    assert outcome.calls == 3
    assert outcome.failed == {}
    assert_accounted(outcome, batch)


def test_exactly_500_records_is_one_call() -> None:
    time = FakeTime()
    client = ScriptedFirehose()
    outcome = sender(client, time).send(records(500))
    assert [len(call.data) for call in client.calls] == [500]
    assert_accounted(outcome, records(500))


def test_calls_hold_at_most_4_mib() -> None:
    # GIVEN nine records of the largest size Firehose accepts (four fit in 4 MiB, five do not)
    time = FakeTime()
    client = ScriptedFirehose()
    batch = records(9, size=MAX_RECORD_BYTES)

    # WHEN sent
    outcome = sender(client, time).send(batch)

    # THEN each call stays within 4 MiB
    assert [len(call.data) for call in client.calls] == [4, 4, 1]
    for call in client.calls:
        assert sum(len(d) for d in call.data) <= MAX_BYTES_PER_CALL
    assert outcome.sent == {r.token for r in batch}
    assert_accounted(outcome, batch)


def test_a_call_may_hold_exactly_4_mib_and_no_byte_more() -> None:
    # GIVEN four maximal records plus one that brings the total to exactly 4 MiB, then one byte
    time = FakeTime()
    client = ScriptedFirehose()
    big = records(4, size=MAX_RECORD_BYTES, prefix="big")
    filler = records(1, size=MAX_BYTES_PER_CALL - 4 * MAX_RECORD_BYTES, prefix="fill")
    tail = records(1, size=1, prefix="tail")
    batch = big + filler + tail

    # WHEN sent
    outcome = sender(client, time).send(batch)

    # THEN the first call is exactly 4 MiB, the last byte goes in a call of its own
    assert [sum(len(d) for d in call.data) for call in client.calls] == [MAX_BYTES_PER_CALL, 1]
    assert_accounted(outcome, batch)


def test_records_for_two_streams_never_share_a_call() -> None:
    # GIVEN records for two streams, interleaved, more than one call's worth for one of them
    time = FakeTime()
    client = ScriptedFirehose()
    first = records(700, STREAM, prefix="a")
    second = records(30, OTHER_STREAM, prefix="b")
    batch = [r for pair in zip(first, second, strict=False) for r in pair] + first[30:]

    # WHEN sent
    outcome = sender(client, time).send(batch)

    # THEN each call names one stream and carries only that stream's records, in their order
    by_stream: dict[str, list[bytes]] = {STREAM: [], OTHER_STREAM: []}
    owner = {r.data: r.stream for r in batch}
    for call in client.calls:
        assert {owner[d] for d in call.data} == {call.stream}
        by_stream[call.stream].extend(call.data)
    assert by_stream[STREAM] == [r.data for r in first]
    assert by_stream[OTHER_STREAM] == [r.data for r in second]
    assert sorted(len(call.data) for call in client.calls) == [30, 200, 500]
    assert_accounted(outcome, batch)


def test_record_over_1000_kib_fails_without_a_call() -> None:
    # GIVEN one record just over Firehose's record limit, and one exactly at it
    time = FakeTime()
    client = ScriptedFirehose()
    too_big = OutgoingRecord("too-big", STREAM, b"x" * (MAX_RECORD_BYTES + 1))
    at_limit = OutgoingRecord("at-limit", STREAM, b"y" * MAX_RECORD_BYTES)

    # WHEN sent
    outcome = sender(client, time).send([too_big, at_limit])

    # THEN the oversized one fails with its size named, is never sent, and the other goes
    assert MAX_RECORD_BYTES == 1_000 * 1024
    assert client.calls == [Call(STREAM, [at_limit.data])]
    assert outcome.sent == {"at-limit"}
    assert str(MAX_RECORD_BYTES + 1) in outcome.failed["too-big"]
    assert_accounted(outcome, [too_big, at_limit])


def test_only_oversized_records_make_no_call_at_all() -> None:
    time = FakeTime()
    client = ScriptedFirehose()
    batch = records(2, size=MAX_RECORD_BYTES + 1)
    outcome = sender(client, time).send(batch)
    assert client.calls == []
    assert outcome.calls == 0
    assert set(outcome.failed) == {r.token for r in batch}
    assert_accounted(outcome, batch)


# --------------------------------------------------------------------------- partial failures


def test_failed_entries_alone_are_resent() -> None:
    # GIVEN five records of which Firehose rejects the second and the fourth
    time = FakeTime()
    client = ScriptedFirehose([fail_entries(1, 3)])
    batch = records(5)

    # WHEN sent
    outcome = sender(client, time).send(batch)

    # THEN the second call carries exactly those two, in order, after one backoff
    assert len(client.calls) == 2
    assert client.calls[1] == Call(STREAM, [batch[1].data, batch[3].data])
    assert time.sleeps == [pytest.approx(0.1)]
    assert outcome.sent == {r.token for r in batch}
    assert outcome.failed == {}
    assert outcome.calls == 2
    assert_accounted(outcome, batch)


def test_entries_that_keep_failing_carry_their_last_error() -> None:
    # GIVEN entry 0 failing on every attempt, with a different message each time
    time = FakeTime()
    script: list[Answer] = [fail_entries(0, message="first"), fail_entries(0, message="second")]
    script.append(fail_entries(0, code="InternalFailure", message="third"))
    client = ScriptedFirehose(script)
    batch = records(3)

    # WHEN sent with three attempts
    outcome = sender(client, time, max_attempts=3).send(batch)

    # THEN only entry 0 is retried, and it fails with the last error seen
    assert [call.data for call in client.calls] == [
        [r.data for r in batch],
        [batch[0].data],
        [batch[0].data],
    ]
    assert outcome.failed == {batch[0].token: f"{STREAM}: InternalFailure: third"}
    assert outcome.sent == {batch[1].token, batch[2].token}
    assert_accounted(outcome, batch)


def test_a_retry_that_succeeds_clears_the_failure() -> None:
    time = FakeTime()
    client = ScriptedFirehose([fail_all(), fail_entries(1)])
    batch = records(3)
    outcome = sender(client, time).send(batch)
    assert [len(call.data) for call in client.calls] == [3, 3, 1]
    assert client.calls[2].data == [batch[1].data]
    assert outcome.failed == {}
    assert_accounted(outcome, batch)


def test_failures_in_two_streams_are_retried_per_stream() -> None:
    # GIVEN one failed entry in each stream's call
    time = FakeTime()
    client = ScriptedFirehose([fail_entries(0), fail_entries(1)])
    first = records(2, STREAM, prefix="a")
    second = records(2, OTHER_STREAM, prefix="b")

    # WHEN sent
    outcome = sender(client, time).send(first + second)

    # THEN the retry round makes one call per stream with only that stream's failed entry
    assert client.calls[2:] == [Call(STREAM, [first[0].data]), Call(OTHER_STREAM, [second[1].data])]
    assert len(time.sleeps) == 1
    assert outcome.failed == {}
    assert_accounted(outcome, first + second)


# --------------------------------------------------------------------------- call-level errors


@pytest.mark.parametrize(
    "code", ["ServiceUnavailableException", "ThrottlingException", "LimitExceededException"]
)
def test_transient_client_error_retries_the_whole_chunk(code: str) -> None:
    # GIVEN a call that fails as a whole with a transient error, then succeeds
    time = FakeTime()
    client = ScriptedFirehose([client_error(code)])
    batch = records(4)

    # WHEN sent
    outcome = sender(client, time).send(batch)

    # THEN the same chunk is sent again after a backoff, and all is delivered
    assert len(client.calls) == 2
    assert client.calls[1] == client.calls[0] == Call(STREAM, [r.data for r in batch])
    assert len(time.sleeps) == 1
    assert outcome.sent == {r.token for r in batch}
    assert_accounted(outcome, batch)


@pytest.mark.parametrize(
    "code", ["ResourceNotFoundException", "InvalidArgumentException", "AccessDeniedException"]
)
def test_non_transient_client_error_fails_at_once(code: str) -> None:
    # GIVEN a call refused for a reason waiting will not fix
    time = FakeTime()
    client = ScriptedFirehose([client_error(code, "stream sluice-test-0 not found")])
    batch = records(3)

    # WHEN sent
    outcome = sender(client, time).send(batch)

    # THEN one call, no sleep, every record failed with the code and stream named
    assert len(client.calls) == 1
    assert time.sleeps == []
    assert set(outcome.failed) == {r.token for r in batch}
    for message in outcome.failed.values():
        assert code in message
        assert STREAM in message
    assert outcome.sent == set()
    assert_accounted(outcome, batch)


def test_non_transient_error_in_one_stream_does_not_stop_the_other() -> None:
    # GIVEN the first stream missing and the second healthy
    time = FakeTime()
    client = ScriptedFirehose([client_error("ResourceNotFoundException")])
    first = records(2, STREAM, prefix="a")
    second = records(2, OTHER_STREAM, prefix="b")

    # WHEN sent
    outcome = sender(client, time).send(first + second)

    # THEN the first stream's records fail, the second's are sent, nothing retried
    assert set(outcome.failed) == {r.token for r in first}
    assert outcome.sent == {r.token for r in second}
    assert len(client.calls) == 2
    assert time.sleeps == []
    assert_accounted(outcome, first + second)


def test_transient_then_non_transient_keeps_the_non_transient_error() -> None:
    time = FakeTime()
    client = ScriptedFirehose([fail_entries(0), client_error("InvalidArgumentException", "bad")])
    batch = records(2)
    outcome = sender(client, time).send(batch)
    assert len(client.calls) == 2
    assert outcome.sent == {batch[1].token}
    assert "InvalidArgumentException" in outcome.failed[batch[0].token]
    assert_accounted(outcome, batch)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionError(error=OSError("connection reset")),
        EndpointConnectionError(endpoint_url="https://firehose.eu-west-2.amazonaws.com"),
        ConnectTimeoutError(endpoint_url="https://firehose.eu-west-2.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://firehose.eu-west-2.amazonaws.com"),
        ConnectionClosedError(endpoint_url="https://firehose.eu-west-2.amazonaws.com"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_transport_errors_are_retried(error: Exception) -> None:
    # GIVEN a call lost in transport, then a good one
    time = FakeTime()
    client = ScriptedFirehose([error])
    batch = records(3)

    # WHEN sent
    outcome = sender(client, time).send(batch)

    # THEN the chunk is sent again and delivered
    assert len(client.calls) == 2
    assert client.calls[1] == client.calls[0]
    assert outcome.sent == {r.token for r in batch}
    assert outcome.failed == {}
    assert_accounted(outcome, batch)


def test_transport_errors_that_persist_fail_with_the_error() -> None:
    time = FakeTime()
    url = "https://firehose.eu-west-2.amazonaws.com"
    client = ScriptedFirehose([EndpointConnectionError(endpoint_url=url)] * 3)
    batch = records(2)
    outcome = sender(client, time, max_attempts=3).send(batch)
    assert len(client.calls) == 3
    assert set(outcome.failed) == {r.token for r in batch}
    assert all(url in message for message in outcome.failed.values())
    assert_accounted(outcome, batch)


def test_other_botocore_errors_fail_at_once() -> None:
    time = FakeTime()
    client = ScriptedFirehose([NoCredentialsError()])
    batch = records(2)
    outcome = sender(client, time).send(batch)
    assert len(client.calls) == 1
    assert time.sleeps == []
    assert all("credentials" in message for message in outcome.failed.values())
    assert_accounted(outcome, batch)


def test_response_with_wrong_entry_count_is_retried_whole() -> None:
    # GIVEN a response that cannot be matched to the records (one entry short)
    time = FakeTime()
    client = ScriptedFirehose([entries_short_by_one])
    batch = records(4)

    # WHEN sent
    outcome = sender(client, time).send(batch)

    # THEN no record is assumed sent from it: the whole chunk goes again
    assert len(client.calls) == 2
    assert client.calls[1] == client.calls[0]
    assert outcome.sent == {r.token for r in batch}
    assert_accounted(outcome, batch)


def test_response_with_wrong_entry_count_that_persists_fails_everything() -> None:
    time = FakeTime()
    client = ScriptedFirehose([entries_short_by_one] * 2)
    batch = records(4)
    outcome = sender(client, time, max_attempts=2).send(batch)
    assert outcome.sent == set()
    assert all("answered 3 entries" in message for message in outcome.failed.values())
    assert_accounted(outcome, batch)


# --------------------------------------------------------------------------- bounds and backoff


@pytest.mark.parametrize("max_attempts", [1, 2, 6])
def test_max_attempts_bounds_the_calls(max_attempts: int) -> None:
    # GIVEN a Firehose that always throttles, and a budget that is no constraint
    time = FakeTime()
    client = ScriptedFirehose([client_error("ThrottlingException", f"#{i}") for i in range(20)])
    batch = records(2)

    # WHEN sent
    outcome = sender(client, time, max_attempts=max_attempts, budget=1e6).send(batch)

    # THEN exactly max_attempts calls, a sleep between each two, and the last error kept
    assert len(client.calls) == max_attempts
    assert outcome.calls == max_attempts
    assert len(time.sleeps) == max_attempts - 1
    for message in outcome.failed.values():
        assert f"#{max_attempts - 1}" in message
        assert "ThrottlingException" in message
    assert_accounted(outcome, batch)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    # GIVEN jitter fixed at its top (1.0), base 0.1 s, cap 1 s, failing forever
    time = FakeTime()
    client = ScriptedFirehose([fail_all()] * 8)
    batch = records(1)

    # WHEN sent with eight attempts
    outcome = sender(client, time, max_attempts=8, base=0.1, cap=1.0, budget=1e6).send(batch)

    # THEN the delays double from the base until they reach the cap
    assert time.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    assert_accounted(outcome, batch)


def test_backoff_is_scaled_by_the_jitter() -> None:
    # GIVEN full jitter returning 0.25
    time = FakeTime()
    client = ScriptedFirehose([fail_all()] * 4)

    # WHEN sent
    sender(client, time, max_attempts=4, base=1.0, cap=3.0, jitter=0.25).send(records(1))

    # THEN each delay is that fraction of the capped exponential
    assert time.sleeps == pytest.approx([0.25, 0.5, 0.75])


def test_budget_stops_before_a_sleep_would_cross_the_deadline() -> None:
    # GIVEN a 10 s budget and delays 1, 2, 4, 8 (which would end at 15 s)
    time = FakeTime()
    start = time.now
    client = ScriptedFirehose([fail_all(message=f"#{i}") for i in range(20)])
    batch = records(2)

    # WHEN sent with attempts to spare
    outcome = sender(client, time, max_attempts=20, base=1.0, cap=100.0, budget=10.0).send(batch)

    # THEN it sleeps 1, 2 and 4, makes the fourth call, and does not sleep 8 more
    assert time.sleeps == [1.0, 2.0, 4.0]
    assert len(client.calls) == 4
    assert time.now - start <= 10.0
    assert all(message.endswith("#3") for message in outcome.failed.values())
    assert_accounted(outcome, batch)


@pytest.mark.parametrize(("budget", "sleeps"), [(7.0, 3), (6.99, 2)])
def test_a_sleep_ending_exactly_at_the_deadline_is_allowed(budget: float, sleeps: int) -> None:
    time = FakeTime()
    client = ScriptedFirehose([fail_all()] * 20)
    batch = records(1)
    sender(client, time, max_attempts=20, base=1.0, cap=100.0, budget=budget).send(batch)
    assert len(time.sleeps) == sleeps
    assert len(client.calls) == sleeps + 1


def test_budget_counts_the_time_calls_take() -> None:
    # GIVEN calls that take 3 s each and a 10 s budget: t=3, sleep 1 → 4, t=7, sleep 2 → 9,
    # t=12 — past the deadline, so no third sleep
    time = FakeTime()
    start = time.now
    client = ScriptedFirehose([client_error("ServiceUnavailableException")] * 20, time, 3.0)
    batch = records(2)

    # WHEN sent
    outcome = sender(client, time, max_attempts=20, base=1.0, cap=100.0, budget=10.0).send(batch)

    # THEN it gave up after the third call without sleeping again
    assert time.sleeps == [1.0, 2.0]
    assert len(client.calls) == 3
    assert time.now - start == pytest.approx(12.0)
    assert set(outcome.failed) == {r.token for r in batch}
    assert_accounted(outcome, batch)


def test_a_call_that_ends_past_the_deadline_still_delivers() -> None:
    # GIVEN calls of 0.1 s, a 0.2 s budget and one failed entry: the retry's sleep ends exactly
    # at the deadline, and the retry call itself ends past it
    time = FakeTime()
    start = time.now
    client = ScriptedFirehose([fail_entries(0)], time, call_seconds=0.1)
    batch = records(2)

    # WHEN sent
    outcome = sender(client, time, base=0.1, budget=0.2).send(batch)

    # THEN what that call delivered counts as sent: the budget bounds waiting, not success
    assert time.now - start == pytest.approx(0.3)
    assert len(client.calls) == 2
    assert outcome.failed == {}
    assert_accounted(outcome, batch)


def test_many_records_mixed_failures_are_all_accounted_for() -> None:
    # GIVEN 1,100 records over two streams and a Firehose that rejects a scattering of entries,
    # one call outright, then answers a call malformed
    time = FakeTime()
    script: list[Answer] = [
        fail_entries(*range(0, 500, 7)),
        client_error("ThrottlingException"),
        fail_entries(*range(0, 100, 3), code="InternalFailure"),
        entries_short_by_one,
        fail_entries(0),
        client_error("InvalidArgumentException"),
    ]
    client = ScriptedFirehose(script)
    batch = records(800, STREAM, prefix="a") + records(300, OTHER_STREAM, prefix="b")

    # WHEN sent with a tight attempt limit
    outcome = sender(client, time, max_attempts=3).send(batch)

    # THEN every token is either sent or failed with a message, never both, never neither
    assert_accounted(outcome, batch)
    assert outcome.failed
    assert outcome.sent
    assert all(outcome.failed.values())
    assert outcome.calls == len(client.calls)
