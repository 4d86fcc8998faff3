"""The dependency lock: `make lock-check` names each way pyproject, lock, exports and venv drift.

Runs the venv's real uv (pinned by the lock itself) on copies of the checkout's files; offline.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infrastructure.lock import DEV, LAMBDA, ROOT, LockError, check, check_environment

LOCK_FILES = ("pyproject.toml", "uv.lock", "README.md")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of what the lock check reads: pyproject.toml, uv.lock and requirements/."""
    for name in LOCK_FILES:
        shutil.copyfile(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    return tmp_path


def test_the_committed_lock_agrees_with_pyproject_exports_and_this_venv(checkout: Path) -> None:
    # GIVEN the checkout's files as committed, WHEN they are checked, THEN nothing is wrong
    check(checkout)


def test_a_dependency_added_without_a_new_lock_is_named(checkout: Path) -> None:
    # GIVEN a runtime dependency added to pyproject.toml, and no `make lock` after it
    pyproject = checkout / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(
        text.replace("dependencies = [\n", 'dependencies = [\n    "rich>=13",\n', 1)
    )

    # WHEN the lock is checked, THEN it fails, saying what disagrees and what fixes it
    with pytest.raises(LockError, match=r"uv\.lock does not match pyproject\.toml.*make lock"):
        check(checkout)


def test_a_range_the_lock_no_longer_satisfies_is_named(checkout: Path) -> None:
    # GIVEN a lower bound raised past the locked version
    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"fastavro>=1.9"', '"fastavro>=99"', 1))

    # WHEN checked, THEN it fails the same way
    with pytest.raises(LockError, match=r"uv\.lock does not match pyproject\.toml"):
        check(checkout)


@pytest.mark.parametrize("export", [DEV, LAMBDA])
def test_an_edited_export_is_named(checkout: Path, export: Path) -> None:
    # GIVEN an export edited by hand: one version changed
    path = checkout / export
    text = path.read_text()
    edited = text.replace("boto3==", "boto3==0.0.1+", 1)
    assert edited != text
    path.write_text(edited)

    # WHEN checked, THEN the file is named
    with pytest.raises(LockError, match=rf"{export} is not what uv\.lock exports; run `make lock`"):
        check(checkout)


def test_a_venv_holding_other_versions_is_named(tmp_path: Path) -> None:
    # GIVEN a lock that pins pytest at a version this venv does not have, and leaves out the rest
    requirements = tmp_path / "dev.txt"
    requirements.write_text(
        "pytest==0.0.1 \\\n    --hash=sha256:00\n"
        "not-a-package-here==1.0 ; python_version < '3'\n"  # a marker that excludes it
    )

    # WHEN the environment is checked against it
    with pytest.raises(LockError) as raised:
        check_environment(requirements)

    # THEN the wrong version and a package the lock does not hold are both named, with the fix
    message = str(raised.value)
    assert "run `make install`" in message
    assert "pytest: locked 0.0.1, installed " in message
    assert "moto: installed " in message
    assert "not-a-package-here" not in message
