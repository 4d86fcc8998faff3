"""`make bench`'s sections on tiny inputs: each produces exactly its figures, and the runner
writes what it measured. No timings are checked: this machine's load says nothing about Sluice.
"""

from __future__ import annotations

import json
import platform
import re
import sys
from pathlib import Path

import pytest

from infrastructure.bench import __main__ as runner
from infrastructure.bench import core, functions, results
from infrastructure.bench.results import Figure


def test_core_section_produces_its_figures(tmp_path: Path) -> None:
    # GIVEN tiny windows  WHEN the core section measures them
    figures = core.measure(core.TINY, tmp_path)
    # THEN it gives exactly the core figures, each positive, goals judged
    runner.check_names("core", figures)
    assert all(figure.value > 0 for figure in figures)
    assert {f.name for f in figures if f.met is not None} == {
        "delivery_files_per_s_1k",
        "delivery_mb_per_s_100k",
        "delivery_vs_limit",
    }
    # ... and the faster deflate's cost in bytes beside its speed
    [files_1k] = [f for f in figures if f.name == "delivery_files_per_s_1k"]
    assert "compression" in files_1k.reference
    assert "zlib level 6" in files_1k.reference


def test_the_core_bench_builds_the_same_archive_every_time(tmp_path: Path) -> None:
    # GIVEN one small window  WHEN it is delivered twice
    window = core.make_window(tmp_path / "w.json.gz", core.Payload(), 5, 1024, ref=False)
    first, second = core.deliver(window, tmp_path), core.deliver(window, tmp_path)
    # THEN the same bytes (the real archive path is deterministic), all files in it
    assert (first.sha256, first.etag, first.files) == (second.sha256, second.etag, 5)


def test_functions_section_produces_its_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the cold start stubbed: it builds the Lambda packages, which the slow tests cover
    # (tests/slow/test_packaging.py)
    def cold_start(sizes: functions.Sizes, reduced: str, workdir: Path) -> Figure:
        return Figure("cold_start_ms_max", 1.0, "ms", "stub")

    monkeypatch.setattr(functions, "measure_cold_start", cold_start)
    figures = functions.measure(functions.TINY, tmp_path)
    runner.check_names("functions", figures)
    by_name = {figure.name: figure for figure in figures}
    # 10 reads, 10 claims, a send per stream and one completion: never fewer than 2 a file
    assert by_name["forwarder_sdk_calls_per_file"].value >= 2
    assert "fakes" in by_name["forwarder_envelope_cpu_ms_per_file"].note


IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       900 |        900 |       botocore.compat
import time:     40000 |      40900 |     botocore
import time:    150000 |     190900 |   aws_xray_sdk.core
import time:      3000 |       3000 |     delivery.names
import time:      2000 |       5000 |   delivery.archive
import time:      1000 |     196900 | delivery.handler
"""


def test_import_time_is_attributed_to_packages_by_self_time() -> None:
    # GIVEN -X importtime's lines for a handler module
    # WHEN they are parsed
    run = functions.parse_importtime(IMPORTTIME, "delivery.handler")
    # THEN the total is the module's cumulative time and each package sums its own self time
    assert run.total_ms == pytest.approx(196.9)
    assert run.by_package_ms == pytest.approx(
        {"botocore": 40.9, "aws_xray_sdk": 150.0, "delivery": 6.0}
    )
    # AND the summary names the costliest packages first, Sluice's own modules as one
    summary = functions.where_import_time_goes(run)
    assert summary == "aws_xray_sdk 150 ms, botocore 41 ms; Sluice's own modules 6 ms"


def test_import_time_of_a_module_not_imported_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"no import time for transform\.forwarder"):
        functions.parse_importtime(IMPORTTIME, "transform.forwarder")


def test_cold_start_is_measured_in_the_environment_lambda_gives(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a developer's shell pointing boto3 at a local endpoint, tracing off, a virtualenv
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("VIRTUAL_ENV", "/somewhere/.venv")
    monkeypatch.setenv("PYTHONSTARTUP", "/somewhere/startup.py")
    # WHEN the delivery function's cold-start environment is built for its unpacked zip
    env = functions.cold_start_env("delivery", tmp_path)
    # THEN it has Lambda's runtime variables (the X-Ray SDK samples locally in Lambda), its
    # configured ones, tracing on as deployed, the zip as its code, and nothing of this shell's
    # but PATH: no endpoint, no virtualenv, no Python variable of the developer's
    assert env["LAMBDA_TASK_ROOT"] == str(tmp_path)
    assert env["PYTHONPATH"] == str(tmp_path)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "sluice-bench-delivery"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["_HANDLER"] == "delivery.handler.lambda_handler"
    assert env["POWERTOOLS_SERVICE_NAME"] == "delivery"
    assert "POWERTOOLS_TRACE_DISABLED" not in env
    assert not [name for name in env if name.startswith("AWS_ENDPOINT_URL")]
    assert "VIRTUAL_ENV" not in env
    assert "PYTHONSTARTUP" not in env


def test_runner_writes_json_and_its_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a section that returns fixed figures, and output paths in tmp_path
    fixed = [
        Figure(name, 1.0, "x", "what", goal="> 2", met=False, note=f"{name} is limited")
        for name in runner.SECTIONS["core"]
    ]
    monkeypatch.setattr(runner, "load_section", lambda name: lambda quick, workdir: fixed)
    monkeypatch.setattr(runner, "JSON_PATH", tmp_path / "bench.json")
    monkeypatch.setattr(results, "DOC", tmp_path / "BENCHMARKS.md")
    monkeypatch.setattr(results.write_section, "__defaults__", (tmp_path / "BENCHMARKS.md",))
    # WHEN the runner runs it, fully and then quickly
    assert runner.main(["--only", "core"]) == 0
    assert runner.main(["--quick", "--only", "core"]) == 0
    # THEN bench.json holds every figure and the document says what limits each missed goal
    assert set(json.loads((tmp_path / "bench.json").read_text())) == set(runner.SECTIONS["core"])
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "delivery_files_per_s_1k is limited" in text
    # AND each run of one section wrote a section of its own, the quick one apart, so neither
    # replaces a full run's figures
    full, _, quick = text.partition("<!-- bench-quick-core: begin -->")
    assert "<!-- bench-core: begin -->" in full
    assert "<!-- bench: begin -->" not in text
    assert "Measured by `python -m infrastructure.bench --only core`" in full
    assert "Measured by `python -m infrastructure.bench --quick --only core`" in quick


def test_a_missing_section_fails_clearly_before_measuring(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a section module that is not there
    monkeypatch.setitem(runner.SECTIONS, "absent", ("some_figure",))
    # WHEN it is asked for  THEN the run fails at once, naming the file, inventing nothing
    assert runner.main(["--only", "absent"]) == 2
    assert "infrastructure/bench/absent.py" in capsys.readouterr().err


def test_a_cold_start_names_the_interpreter_version_and_build_it_was_measured_with() -> None:
    # GIVEN this interpreter WHEN the bench describes its build
    built = functions.interpreter_build(sys.executable)

    # THEN the description names its version and the build options that change its speed
    assert built.startswith(f"{platform.python_version()} (")
    assert re.fullmatch(r"\S+ \((no )?PGO, (no )?LTO, (shared|static) libpython\)", built), built
