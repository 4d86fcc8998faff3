"""`sluice capacity` and the sizing math it shares with docs/scripts/sizing.py, on known inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from infrastructure import sizing
from infrastructure.cli.main import main

KIB = 1024


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("100KB", 100_000),
        ("64KiB", 64 * KIB),
        ("1MB", 1_000_000),
        ("1.5MiB", 1_572_864),
        ("512", 512),
        ("2 gb", 2_000_000_000),
    ],
)
def test_sizes_are_read_in_decimal_and_binary_units(text: str, size: int) -> None:
    assert sizing.parse_size(text) == size


@pytest.mark.parametrize("text", ["12XB", "", "KB", "-1KB", "0KB", "1e3KB", "100 K B"])
def test_a_bad_size_is_rejected_naming_the_value(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).replace("\\", "\\\\")):
        sizing.parse_size(text)


def test_100_kb_files_at_10_per_second_travel_by_reference_with_ample_headroom() -> None:
    record = sizing.record_bytes(100_000, 64 * KIB)
    assert record == sizing.ref_record_bytes() < 1_000
    load = sizing.firehose_load(10, record, streams=2)
    assert load.quota_share < 0.01
    assert load.binding_share < 0.01
    assert load.streams_needed == 1


def test_files_at_the_inline_limit_need_eleven_streams_at_100_per_second() -> None:
    """The README's worst case: binary files just under 64 KiB, base64 in their envelopes."""
    record = sizing.record_bytes(64 * KIB, 64 * KIB)
    assert record == math.ceil(64 * KIB / 3) * 4 + sizing.ref_record_bytes()
    load = sizing.firehose_load(100, record, streams=2)
    assert load.quota_share == pytest.approx(4.19, abs=0.01)
    assert load.streams_needed == 11
    assert sizing.record_bytes(64 * KIB + 1, 64 * KIB) == sizing.ref_record_bytes()


def test_a_burst_over_capacity_leaves_a_backlog_that_drains_at_the_spare_rate() -> None:
    assert sizing.backlog(10, 100, 120, capacity=50) == sizing.Backlog(6_000, 150)
    assert sizing.backlog(10, 100, 120, capacity=400) == sizing.Backlog(0, 0)
    assert math.isinf(sizing.backlog(60, 100, 120, capacity=50).drain_seconds)


def test_delivery_time_per_window_takes_the_larger_of_bytes_and_per_file_cost() -> None:
    # 10 files/s over 2 streams, 60 s windows: 300 files of 100 KB = 30 MB per window.
    load = sizing.delivery_load(10, 100_000, 2, 60, bytes_per_s=10e6, seconds_per_file=0.001)
    assert load.window_file_bytes == 30e6
    assert load.seconds_per_window == pytest.approx(3.0)
    assert load.concurrency == pytest.approx(2 / 60 * 3.0)
    tiny = sizing.delivery_load(10, 1_000, 2, 60, bytes_per_s=10e6, seconds_per_file=0.001)
    assert tiny.seconds_per_window == pytest.approx(0.3)


def test_monthly_costs_match_the_readme_table() -> None:
    costs = sizing.monthly_costs(10, 100_000, hot_days=7, expire_days=15)
    assert round(costs.files / 1e6, 1) == 26.3
    assert round(costs.transitions) == 1_314
    assert round(costs.hot) == 14
    assert round(costs.expire) == 30
    assert round(costs.puts) == 131
    assert round(costs.firehose) == 4


def test_unknown_or_bad_prices_are_named() -> None:
    prices = dict(sizing.PRICES)
    sizing.set_prices(prices, ["s3_put_per_1000=0.01"])
    assert prices["s3_put_per_1000"] == 0.01
    with pytest.raises(ValueError, match="'nope'"):
        sizing.set_prices(prices, ["nope=1"])
    with pytest.raises(ValueError, match="'cheap'"):
        sizing.set_prices(prices, ["s3_put_per_1000=cheap"])


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["capacity", *args, "--json"]) == 0
    document: dict[str, object] = json.loads(capsys.readouterr().out)
    return document


def test_json_has_every_section_and_names_the_defaults_it_assumed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = run_json(capsys, "--rate", "10", "--size", "100KB", "--bench", str(tmp_path / "none"))
    assert set(doc) == {
        "inputs",
        "assumed",
        "firehose",
        "lambda",
        "backlog",
        "storage_bytes",
        "costs",
    }
    inputs = doc["inputs"]
    assert isinstance(inputs, dict)
    assert inputs["carried"] == "ref"
    assert inputs["burst_rate"] == 100
    assumed = doc["assumed"]
    assert isinstance(assumed, dict)
    assert assumed["forwarder_batch_ms"]["source"].startswith("default")
    costs = doc["costs"]
    assert isinstance(costs, dict)
    assert set(costs) >= {"prices", "items", "deep_archive", "expire"}
    assert costs["deep_archive"]["first_month"] > costs["expire"]["monthly"]
    storage = doc["storage_bytes"]
    assert isinstance(storage, dict)
    assert set(storage["per_day"]) == {"landing", "staging", "minio"}


def test_measured_costs_come_from_bench_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(
        json.dumps(
            {
                "forwarder_batch10_ms": {"value": 100.0, "unit": "ms"},
                "delivery_mb_per_s_100k": {"value": 5.0, "unit": "MB/s"},
            }
        )
    )
    doc = run_json(capsys, "--rate", "100", "--size", "100KB", "--bench", str(bench))
    assumed = doc["assumed"]
    assert isinstance(assumed, dict)
    assert assumed["forwarder_batch_ms"] == {
        "value": 100.0,
        "source": "build/bench.json: forwarder_batch10_ms",
    }
    assert assumed["delivery_files_per_s"]["source"].startswith("default")
    forwarder = doc["lambda"]["forwarder"]["baseline"]  # type: ignore[index]
    assert forwarder["concurrency"] == pytest.approx(10 * 0.1)


def test_at_the_inline_limit_the_text_says_how_many_streams(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["capacity", "--rate", "100", "--size", "64KiB", "--bench", str(tmp_path / "none")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "streams needed for the 80% alarm: 11" in out
    assert "over the quota" in out
    assert "deep_archive:" in out
    assert "expire (15 days):" in out


def test_a_bad_size_on_the_command_line_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["capacity", "--rate", "10", "--size", "12XB"])
    assert exited.value.code == 2
    assert "'12XB'" in capsys.readouterr().err
