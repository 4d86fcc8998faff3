"""Packaging finds the Lambda runtime's Python to compile the bytecode, or says which it wanted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from infrastructure import packaging
from infrastructure.packaging import PYTHON_ENV, PYTHON_VERSION, PackagingError, runtime_python


def test_a_configured_interpreter_of_another_version_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN $SLUICE_LAMBDA_PYTHON naming this interpreter, which is not the runtime's version
    monkeypatch.setattr(packaging, "PYTHON_VERSION", "2.7")
    monkeypatch.setenv(PYTHON_ENV, sys.executable)
    # WHEN the runtime's interpreter is asked for  THEN the error names it and where it came from
    with pytest.raises(PackagingError, match=rf"{sys.executable} \(from \${PYTHON_ENV}\)"):
        runtime_python()


def test_no_interpreter_found_lists_what_was_tried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN no python3.12 on PATH, in pyenv or configured
    monkeypatch.delenv(PYTHON_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.setattr(packaging, "PYTHON_VERSION", "3.99")
    # WHEN it is looked for  THEN the error says what was tried and how to name one
    with pytest.raises(PackagingError, match=r"no python3\.99 interpreter found") as raised:
        runtime_python()
    assert "/usr/bin/python3.99" in str(raised.value)
    assert PYTHON_ENV in str(raised.value)


def test_a_configured_interpreter_of_the_runtime_version_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN this interpreter configured, and taken to be the runtime's version
    monkeypatch.setattr(
        packaging, "PYTHON_VERSION", f"{sys.version_info.major}.{sys.version_info.minor}"
    )
    # WHEN it is asked for by --python  THEN it is the one
    assert runtime_python(sys.executable) == sys.executable


def test_the_bytecode_is_for_the_runtime_in_lambda_tf() -> None:
    lambda_tf = (packaging.ROOT / "infrastructure" / "terraform" / "lambda.tf").read_text()
    assert f'runtime          = "python{PYTHON_VERSION}"' in lambda_tf
