"""The packed window entries: every field read back as written, selections in window order,
and the memory a file costs (delivery.window_entries)."""

from __future__ import annotations

import gc
import hashlib
import tracemalloc

import pytest

from delivery.window_entries import WindowEntries, WindowEntry, joined


def entry(n: int, **changes: object) -> WindowEntry:
    made = WindowEntry(
        line_number=n,
        file_id=hashlib.sha256(str(n).encode()).hexdigest(),
        bucket="landing",
        key=f"in/file-{n:06d}.json",
        version_id=f"3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbr{n}",
        size=1000 + n,
        event_time_ms=1_765_000_000_000 + n,
        encoding="base64",
        body_sha256=hashlib.sha256(f"body {n}".encode()).hexdigest(),
        sequencer=f"0055AED6DCD9{n:06X}",
        body_offset=1024 * n,
    )
    return made._replace(**changes)


def test_every_field_reads_back_as_written() -> None:
    # GIVEN entries of every shape: nulls, a ref, another bucket, keys a NUL or a lone
    # surrogate is in, non-ASCII text, a replay's id, big numbers, digests not in lowercase hex
    written = [
        entry(1),
        entry(2, body_sha256=None, sequencer=None, encoding="ref", body_offset=-1),
        entry(3, bucket="other-bucket", encoding="utf8"),
        entry(4, key="a\0b"),
        entry(5, key="caf\u00e9/\ud800.txt", version_id="null"),
        entry(6, file_id=entry(6).file_id + "#r1234", sequencer=""),
        entry(7, size=5 * 2**40, event_time_ms=2**62, body_offset=2**40, line_number=2**31),
        entry(8, body_sha256=""),
        entry(9, body_sha256="AB" * 32),  # uppercase hex: not packed raw (hex() is lowercase)
        entry(10, file_id="12" * 32),  # hex without a letter
        entry(11, file_id="ab cd" + "0" * 59),  # what bytes.fromhex reads as fewer bytes
    ]
    # WHEN packed
    packed = WindowEntries.of(written)
    # THEN each reads back equal, typed, and in order, by index and by iteration
    assert list(packed) == written
    assert [packed[i] for i in range(len(written))] == written
    assert packed[-1] == written[-1]
    assert all(type(e) is WindowEntry for e in packed)
    assert [e.is_ref for e in packed] == [e.is_ref for e in written]
    # AND the partial readers agree with the whole entries
    assert list(packed.file_ids()) == [e.file_id for e in written]
    assert list(packed.ids_and_keys()) == [(e.file_id, e.key) for e in written]
    assert list(packed.event_times_ms()) == [e.event_time_ms for e in written]
    assert list(packed.refs()) == [written[1]]


def test_an_index_past_the_end_is_an_index_error() -> None:
    # GIVEN two entries  WHEN the third is read  THEN IndexError, as a list says
    packed = WindowEntries.of([entry(1), entry(2)])
    with pytest.raises(IndexError):
        packed[2]


def test_selections_keep_window_order_and_share_the_store() -> None:
    # GIVEN ten entries
    written = [entry(n) for n in range(10)]
    packed = WindowEntries.of(written)
    # WHEN selected by ids, by excluded ids, by slice, and split by size
    odd = packed.only({e.file_id for e in written[1::2]})
    kept = packed.without({written[0].file_id, written[9].file_id})
    parts = packed.split_by_size(2 * 1010)
    # THEN each is the expected files, in window order
    assert odd == written[1::2]
    assert kept == written[1:9]
    assert packed[2:5] == written[2:5]
    assert packed.without(set()) is packed
    assert [len(part) for part in parts] == [2, 2, 2, 2, 2]
    assert joined(parts) == written
    # AND a selection of a selection is still the window's files
    assert odd.only({e.file_id for e in written[5:]}) == [written[5], written[7], written[9]]
    assert list(odd.file_ids()) == [e.file_id for e in written[1::2]]
    # AND only the whole window takes new files
    with pytest.raises(TypeError, match="not to a selection"):
        odd.append(entry(11))


def test_selections_of_two_windows_are_not_joined() -> None:
    # GIVEN two windows' entries  WHEN their selections are joined  THEN ValueError
    one, two = WindowEntries.of([entry(1)]), WindowEntries.of([entry(2)])
    with pytest.raises(ValueError, match="different windows"):
        joined([one.without({"x"}), two.without({"x"})])
    assert joined([]) == []


def test_a_file_costs_a_third_of_its_objects() -> None:
    # GIVEN the entries of 20,000 small files, as delivery parses them (fresh strings each)
    count = 20_000
    entries = [entry(n) for n in range(count)]
    as_objects = _traced_bytes(lambda: [_copy(e) for e in entries])
    # WHEN packed
    packed_bytes = _traced_bytes(lambda: WindowEntries.of(entries))
    # THEN each file costs under 300 bytes, where the objects take over 600
    assert as_objects / count > 600
    assert packed_bytes / count < 300


def _copy(e: WindowEntry) -> WindowEntry:
    """The entry with strings of its own, as each parsed line has."""
    return WindowEntry(*(f"{v}!"[:-1] if isinstance(v, str) else v for v in e))


def _traced_bytes(make: object) -> int:
    """Bytes still allocated by what `make()` returns."""
    gc.collect()
    tracemalloc.start()
    try:
        made = make()  # type: ignore[operator]
        size = tracemalloc.get_traced_memory()[0]
        del made
        return size
    finally:
        tracemalloc.stop()
