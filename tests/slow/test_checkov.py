"""checkov over the Terraform in infrastructure/: no failed check, every skip justified in place.

checkov is not a dependency of the project: it lives in a virtualenv of its own under
build/tools/checkov (build/ is ignored by git), created here on first use from PyPI with exactly
the versions and hashes of requirements/checkov.txt (`make lock` writes it; a minute or two), and
rebuilt when that file changes. A failed install fails the test; it is never skipped.

`infrastructure/terraform/tests/` is left out: it holds `terraform test` files and mocks, not
configuration, and checkov's HCL parser (python-hcl2) backtracks without end on one of them
(the string "$${" in tests/glue_athena.tftest.hcl), reporting a parsing error after 10 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LOCKED = REPO / "requirements" / "checkov.txt"
CHECKOV_VERSION = re.findall(r"^checkov==(\S+)", LOCKED.read_text(), re.MULTILINE)[0]
VENV = REPO / "build" / "tools" / "checkov"
CHECKOV = VENV / "bin" / "checkov"
INSTALLED_LOCK = VENV / "installed-from.sha256"
"""The sha256 of the requirements/checkov.txt the venv was built from."""
INSTALL_LOG = REPO / "build" / "tools" / "checkov-install.log"
INSTALL_TIMEOUT_SECONDS = 900
SCAN_TIMEOUT_SECONDS = 600

SCANNED = "infrastructure"
SKIP_PATHS = ("infrastructure/terraform/tests/",)

# Failed checks reported as real findings and not yet settled (neither fixed in the .tf files
# nor accepted with an inline `#checkov:skip=<id>:<reason>`). Listed here so that the test
# fails on any other failure, and on one of these once it no longer fails: then remove it.
OPEN_FINDINGS: dict[tuple[str, str], str] = {}

MINIMUM_REASON_LENGTH = 20


def installed_version() -> str | None:
    if not CHECKOV.exists():
        return None
    completed = subprocess.run(  # noqa: S603  # fixed argv, no shell
        [str(CHECKOV), "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    return completed.stdout.strip() if completed.returncode == 0 else None


def ensure_checkov() -> None:
    """requirements/checkov.txt in its own virtualenv, built anew when that file changed."""
    lock_digest = hashlib.sha256(LOCKED.read_bytes()).hexdigest()
    built_from = INSTALLED_LOCK.read_text().strip() if INSTALLED_LOCK.exists() else None
    if built_from == lock_digest and installed_version() == CHECKOV_VERSION:
        return
    INSTALL_LOG.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        [
            str(VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--no-input",
            "--require-hashes",
            "--requirement",
            str(LOCKED),
        ],
    ]
    with INSTALL_LOG.open("w") as log:
        for argv in steps:
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            try:
                completed = subprocess.run(  # noqa: S603  # fixed argv, no shell
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=INSTALL_TIMEOUT_SECONDS,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                pytest.fail(f"installing checkov: {argv[2]} ran over {INSTALL_TIMEOUT_SECONDS} s")
            if completed.returncode != 0:
                tail = "\n".join(INSTALL_LOG.read_text(errors="replace").splitlines()[-30:])
                pytest.fail(
                    f"could not install checkov=={CHECKOV_VERSION} into {VENV} "
                    f"(exit {completed.returncode}; PyPI or its mirror must be reachable); "
                    f"log {INSTALL_LOG}:\n{tail}"
                )
    version = installed_version()
    assert version == CHECKOV_VERSION, f"{CHECKOV} reports {version!r} after the install"
    INSTALLED_LOCK.write_text(lock_digest + "\n")


def scan() -> dict[str, Any]:
    argv = [str(CHECKOV), "-d", SCANNED, "--framework", "terraform", "--skip-download"]
    for path in SKIP_PATHS:
        argv += ["--skip-path", path]
    argv += ["--output", "json"]
    env = {
        **os.environ,
        # Offline: no fetch of Prisma Cloud's guidelines (only BC_* ids need them).
        "BC_SKIP_MAPPING": "TRUE",
    }
    completed = subprocess.run(  # noqa: S603  # fixed argv, no shell
        argv,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCAN_TIMEOUT_SECONDS,
        check=False,
    )
    # 0: nothing failed, 1: checks failed; anything else is checkov failing.
    assert completed.returncode in (0, 1), (
        f"checkov exited with {completed.returncode}\n{completed.stderr[-4000:]}"
    )
    report = json.loads(completed.stdout)
    reports = report if isinstance(report, list) else [report]
    (terraform,) = [r for r in reports if r.get("check_type") == "terraform"]
    return terraform


def describe(check: dict[str, Any]) -> str:
    lines = check.get("file_line_range") or ["?", "?"]
    return (
        f"{check['check_id']} {check['resource']} "
        f"({check['file_path'].lstrip('/')}:{lines[0]}-{lines[1]}): {check['check_name']}"
    )


def test_checkov_finds_nothing_unjustified() -> None:
    ensure_checkov()
    report = scan()
    summary, results = report["summary"], report["results"]
    assert summary["checkov_version"] == CHECKOV_VERSION
    assert summary["parsing_errors"] == 0, results.get("parsing_errors")
    assert summary["resource_count"] > 0, summary

    # Every inline skip names its reason.
    for check in results.get("skipped_checks", []):
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) >= MINIMUM_REASON_LENGTH, f"no reason given: {describe(check)}"

    failed = {(c["check_id"], c["resource"]): c for c in results.get("failed_checks", [])}
    unexpected = [describe(c) for key, c in sorted(failed.items()) if key not in OPEN_FINDINGS]
    assert not unexpected, "checkov failed checks:\n" + "\n".join(unexpected)
    settled = sorted(key for key in OPEN_FINDINGS if key not in failed)
    assert not settled, f"no longer failing, remove from OPEN_FINDINGS: {settled}"
