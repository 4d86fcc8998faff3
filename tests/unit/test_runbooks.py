"""docs/runbooks/: one runbook per alarm kind of alarms.tf, each complete, each command real.

The single source of truth is the `runbook` attribute of each alarm in
`infrastructure/terraform/alarms.tf` (Terraform appends it to the alarm's description, and
`tests/alarms.tftest.hcl` checks every alarm has one and the file exists). Here, the other
direction: every file in docs/runbooks/ is the runbook of some alarm, has the four parts an
operator needs, and every `sluice …` command it quotes parses with the real CLI parser.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pytest

from infrastructure.cli.main import parser

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "docs" / "runbooks"
ALARMS_TF = ROOT / "infrastructure" / "terraform" / "alarms.tf"
TUNABLES = ROOT / "infrastructure" / "tunables.json"

SECTIONS = ("What it means", "Look at", "Do", "Escalate when")
RUNBOOK_ATTRIBUTE = re.compile(r'^\s*runbook\s*=\s*"([^"]+)"', re.MULTILINE)
INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
FENCE = re.compile(r"^\s*```")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
COMMAND = re.compile(r"^(?:\$\s+)?(?:\.venv/bin/)?sluice\s")


def alarm_runbooks() -> set[str]:
    """Runbook names alarms.tf gives its alarms; `${name}` is each function of the tunables
    (the per-function alarms loop over `local.function_names`, keyed as tunables.functions)."""
    functions = sorted(json.loads(TUNABLES.read_text())["functions"])
    names: set[str] = set()
    for pattern in RUNBOOK_ATTRIBUTE.findall(ALARMS_TF.read_text()):
        variables = set(INTERPOLATION.findall(pattern))
        assert variables <= {"name"}, f"alarms.tf: runbook {pattern!r}: unknown interpolation"
        if variables:
            names |= {pattern.replace("${name}", function) for function in functions}
        else:
            names.add(pattern)
    return names


def runbook_files() -> list[Path]:
    return sorted(path for path in RUNBOOKS.glob("*.md") if path.name != "README.md")


def sections(text: str) -> list[str]:
    return [line[3:].strip() for line in text.splitlines() if line.startswith("## ")]


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else ""


def commands(text: str) -> list[str]:
    """`sluice …` lines of code blocks (continuations joined) and inline `sluice …` spans."""
    found: list[str] = []
    in_block = False
    pending = ""
    for line in text.splitlines():
        if FENCE.match(line):
            in_block = not in_block
            continue
        if in_block:
            stripped = pending + line.strip()
            if stripped.endswith("\\"):
                pending = stripped[:-1] + " "
                continue
            pending = ""
            if COMMAND.match(stripped):
                found.append(stripped)
        else:
            found += [span for span in INLINE_CODE.findall(line) if COMMAND.match(span)]
    return found


def parse_error(command: str) -> str | None:
    """None when the CLI parser accepts the command, else argparse's message."""
    argv = shlex.split(command, comments=True)
    if argv[0] == "$":
        argv = argv[1:]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser().parse_args(argv[1:])
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            lines = stderr.getvalue().strip().splitlines()
            return lines[-1] if lines else f"exit status {exit_.code}"
    return None


def subcommand(command: str) -> str:
    argv = [word for word in shlex.split(command, comments=True) if word != "$"]
    return argv[1] if len(argv) > 1 else ""


def quoted_commands() -> list[tuple[str, str]]:
    """(file name, command) of every `sluice …` command in the runbooks and their index."""
    return [
        (path.name, command)
        for path in [*runbook_files(), RUNBOOKS / "README.md"]
        for command in commands(path.read_text())
    ]


def test_every_alarm_kind_has_a_runbook_and_every_runbook_an_alarm() -> None:
    # GIVEN the runbook names alarms.tf gives its alarms, and the files in docs/runbooks/
    expected = alarm_runbooks()
    present = {path.stem for path in runbook_files()}
    # THEN they are the same: per-function kinds, per-stream Firehose kinds, the rest per alarm
    assert len(expected) == 41
    assert {"delivery-errors", "forwarder-throttles", "firehose-bytes-quota"} <= expected
    assert present - expected == set(), "runbooks no alarm names"
    assert expected - present == set(), "alarms without a runbook file"


def test_the_index_links_every_runbook() -> None:
    index = (RUNBOOKS / "README.md").read_text()
    linked = set(re.findall(r"\]\(([a-z0-9-]+)\.md\)", index))
    assert linked == {path.stem for path in runbook_files()}


@pytest.mark.parametrize("path", runbook_files(), ids=lambda path: path.stem)
def test_runbook_has_its_title_and_the_four_parts(path: Path) -> None:
    text = path.read_text()
    assert text.splitlines()[0] == f"# {path.stem}"
    assert sections(text) == list(SECTIONS)
    for title in SECTIONS:
        assert section(text, title).strip(), f"{path.name}: '{title}' is empty"
    assert re.search(r"^1\. ", section(text, "Do"), re.MULTILINE), "Do: numbered steps"


def test_every_sluice_command_is_for_prod() -> None:
    local = [(name, c) for name, c in quoted_commands() if "--env prod" not in c]
    assert local == [], "commands without --env prod would run against the local stack"


def test_every_sluice_command_quoted_parses_with_the_cli() -> None:
    # GIVEN every `sluice …` command line of the runbooks and their index
    quoted = quoted_commands()
    assert len(quoted) > 50
    # WHEN each is parsed by the real parser
    failures = [
        (name, command, error)
        for name, command in quoted
        if (error := parse_error(command)) is not None
    ]
    # THEN all parse; subcommands not registered yet are named apart from bad arguments
    unregistered = sorted({subcommand(c) for _, c, _ in failures} - set(registered_subcommands()))
    report = "\n".join(f"  {name}: {command}\n      {error}" for name, command, error in failures)
    assert not failures, (
        f"{len(failures)} of {len(quoted)} commands do not parse"
        + (f" (subcommands not registered: {', '.join(unregistered)})" if unregistered else "")
        + f":\n{report}"
    )


def registered_subcommands() -> list[str]:
    action = next(a for a in parser()._actions if a.dest == "command")
    return list(action.choices or {})
