"""The dependency lock: one set of versions, with hashes, for every install of Sluice.

    python -m infrastructure.lock refresh [--upgrade]   # `make lock`
    python -m infrastructure.lock check                 # `make lock-check`, first in CI

`uv.lock` (written by `uv lock`) pins every dependency, direct and transitive, with the hashes of
its files, for every platform and Python that pyproject.toml admits. Two exports of it, written
beside it by `refresh` and committed, are what pip and uv install from with `--require-hashes`:

- `requirements/dev.txt`: the development environment (`make install`: every extra);
- `requirements/lambda.txt`: what the Lambda zips carry (`make package`: `[project] dependencies`
  only; markers are evaluated for the runtime's Python and architecture when the zip is built).

`requirements/checkov.txt` pins the checkov the Terraform scan installs in a virtualenv of its
own (tests/slow/test_checkov.py), compiled from `requirements/checkov.in` on its own since its
dependencies are not Sluice's.

`check` fails, naming the file and the command that fixes it, when pyproject.toml and uv.lock
disagree, when an export is not what uv.lock gives, or when the running environment holds other
versions than requirements/dev.txt (a venv built before the lock changed: `make install` again).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from packaging.markers import Marker
from packaging.utils import canonicalize_name

ROOT: Final = Path(__file__).resolve().parent.parent
REQUIREMENTS: Final = Path("requirements")
DEV: Final = REQUIREMENTS / "dev.txt"
LAMBDA: Final = REQUIREMENTS / "lambda.txt"
CHECKOV_INPUT: Final = REQUIREMENTS / "checkov.in"
CHECKOV: Final = REQUIREMENTS / "checkov.txt"

EXPORTS: Final = {
    DEV: ("--all-extras",),
    LAMBDA: ("--no-dev",),
}
"""Each committed export of uv.lock and the `uv export` options that write it."""

CHECKOV_PYTHON: Final = "3.11"
"""The oldest Python the checkov virtualenv is built with (the test's own interpreter)."""

NOT_LOCKED: Final = frozenset({"pip", "sluice"})
"""In the venv but not in requirements/dev.txt: the venv's own installer and Sluice (editable)."""

PIN: Final = re.compile(
    r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;\\]+)\s*(?:;(?P<marker>[^\\]+))?"
)
"""A pinned line of a requirements file: `name==version [; marker] [\\]`."""


class LockError(Exception):
    """The lock, its exports or the environment disagree; the message says how to fix it."""


def uv(*args: str, root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the venv's uv (pinned by the lock itself) in the checkout."""
    command = [str(Path(sys.executable).parent / "uv"), *args]
    try:
        return subprocess.run(  # noqa: S603  # fixed argv from this module, no shell
            command, cwd=root, capture_output=True, text=True, check=False
        )
    except OSError as error:
        raise LockError(f"cannot run {command[0]}: {error}; run `make install`") from error


HEADER: Final = (
    "# Exported from uv.lock by `make lock` (python -m infrastructure.lock); do not edit.\n"
)


def export_command(options: Sequence[str]) -> list[str]:
    return [
        "export",
        "--frozen",
        "--no-emit-project",
        "--no-header",
        "--format",
        "requirements-txt",
        *options,
    ]


def exported(options: Sequence[str], root: Path = ROOT) -> str:
    """What uv.lock exports with `options`, as the committed file holds it."""
    completed = uv(*export_command(options), root=root)
    if completed.returncode != 0:
        raise LockError(f"uv export {' '.join(options)} failed\n{_tail(completed)}")
    return HEADER + completed.stdout


def checkov_command() -> list[str]:
    return [
        "pip",
        "compile",
        str(CHECKOV_INPUT),
        "--universal",
        "--python-version",
        CHECKOV_PYTHON,
        "--generate-hashes",
        "--quiet",
    ]


def refresh(*, upgrade: bool, root: Path = ROOT) -> None:
    """`uv lock` (keeping today's versions unless `upgrade`), then write every export."""
    _run(["lock", *(["--upgrade"] if upgrade else [])], "uv lock", root)
    for path, options in EXPORTS.items():
        _say(f"uv {' '.join(export_command(options))} > {path}")
        (root / path).write_text(exported(options, root), encoding="utf-8")
    _run(
        [*checkov_command(), *(["--upgrade"] if upgrade else []), "--output-file", str(CHECKOV)],
        f"uv pip compile to {CHECKOV}",
        root,
    )
    _say(f"wrote uv.lock, {', '.join(str(p) for p in (*EXPORTS, CHECKOV))}; review and commit")


def check(root: Path = ROOT) -> None:
    """Raise LockError naming the first disagreement between pyproject, lock, exports and venv."""
    locked = uv("lock", "--check", "--offline", root=root)
    if locked.returncode != 0:
        raise LockError(
            "uv.lock does not match pyproject.toml (a dependency or range changed without a "
            "new lock); run `make lock` and commit uv.lock and requirements/\n" + _tail(locked)
        )
    for path, options in EXPORTS.items():
        if exported(options, root) != (root / path).read_text(encoding="utf-8"):
            raise LockError(
                f"{path} is not what uv.lock exports; run `make lock` and commit requirements/"
            )
    _check_checkov_pin(root)
    check_environment(root / DEV)
    _say(f"uv.lock, requirements/ and {sys.prefix} agree")


def _check_checkov_pin(root: Path) -> None:
    wanted = pins((root / CHECKOV_INPUT).read_text(encoding="utf-8"), markers=False)
    pinned = pins((root / CHECKOV).read_text(encoding="utf-8"), markers=False)
    for name, version in wanted.items():
        if pinned.get(name) != version:
            raise LockError(
                f"{CHECKOV} pins {name} {pinned.get(name)}, {CHECKOV_INPUT} asks for {version}; "
                "run `make lock` and commit requirements/"
            )


def check_environment(requirements: Path) -> None:
    """The running venv holds exactly the versions of `requirements` that apply to it."""
    wanted = pins(requirements.read_text(encoding="utf-8"), markers=True)
    installed: dict[str, str] = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
    }
    problems = [
        f"{name}: locked {version}, installed {installed.get(name, 'nothing')}"
        for name, version in sorted(wanted.items())
        if installed.get(name) != version
    ]
    problems += [
        f"{name}: installed {version}, not in the lock"
        for name, version in sorted(installed.items())
        if name not in wanted and name not in NOT_LOCKED
    ]
    if problems:
        raise LockError(
            f"{sys.prefix} is not what {requirements} pins; run `make install` "
            "(it rebuilds the venv when the lock changes):\n  " + "\n  ".join(problems)
        )


def pins(text: str, *, markers: bool) -> dict[str, str]:
    """Name → version of every `name==version` line (`markers`: only those applying here)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = PIN.match(line)
        if match is None:
            continue
        marker = match["marker"]
        if markers and marker and not Marker(marker.strip()).evaluate():
            continue
        found[canonicalize_name(match["name"])] = match["version"]
    return found


def _run(args: list[str], what: str, root: Path) -> None:
    _say(f"uv {' '.join(args)}")
    completed = uv(*args, root=root)
    if completed.returncode != 0:
        raise LockError(f"{what} failed (exit {completed.returncode})\n{_tail(completed)}")


def _tail(completed: subprocess.CompletedProcess[str], lines: int = 20) -> str:
    output = (completed.stdout + completed.stderr).strip().splitlines()[-lines:]
    return "\n".join(f"  {line}" for line in output)


def _say(message: str) -> None:
    print(f"[lock] {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infrastructure.lock",
        description="Refresh or check the dependency lock (uv.lock and requirements/).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    refresh_parser = commands.add_parser("refresh", help="uv lock, then write requirements/")
    refresh_parser.add_argument(
        "--upgrade", action="store_true", help="take the newest releases the ranges admit"
    )
    commands.add_parser("check", help="pyproject.toml, uv.lock, requirements/ and the venv agree")
    args = parser.parse_args(argv)
    try:
        if args.command == "refresh":
            refresh(upgrade=args.upgrade)
        else:
            check()
    except LockError as error:
        print(f"[lock] FAILED: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
