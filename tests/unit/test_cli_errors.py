"""Every `sluice` command, run as the operator runs it (a subprocess of the installed command),
fails with one line that says what was wrong and what to do, exit status 2 for a usage error and
1 for anything else, and never a traceback (unless `--debug` asks for one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infrastructure.cli import deployment, main
from infrastructure.cli.errors import DeploymentError
from infrastructure.local.stack.stack_file import NoStackError
from tests.servers import free_port

SLUICE = Path(sys.executable).with_name("sluice")
REPOSITORY = Path(__file__).resolve().parents[2]


def sluice(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  # our own command
        [str(SLUICE), *argv],
        env={**os.environ, "SLUICE_ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def messages(stderr: str) -> list[str]:
    """stderr without argparse's usage (its first line and their indented continuation)."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith(("usage:", " "))
    ]


# -- (a) no local stack, no deployment, no MinIO -----------------------------------------------

NO_STACK = [
    ["status"],
    ["trace", "s3://sluice-local-landing/acme/x.json"],
    ["reconcile", "--since", "5m"],
    ["redrive"],
    ["replay", "--since", "1h"],
    ["quarantine", "list"],
    ["quarantine", "release", "0123abcd"],
    ["pause", "forwarder"],
    ["resume", "delivery"],
    ["chaos", "minio-down", "--seconds", "1"],
    ["put", __file__],
    ["load", "--seconds", "1"],
    ["smoke"],
]
"""Every command that reads the local stack (`up` starts one; `down` has nothing to stop)."""


@pytest.mark.parametrize("argv", NO_STACK, ids=" ".join)
def test_a_command_without_a_stack_says_how_to_start_one(tmp_path: Path, argv: list[str]) -> None:
    # GIVEN no local stack under SLUICE_ROOT
    # WHEN the command runs
    result = sluice(tmp_path, *argv)
    # THEN one line on stderr names the missing stack and how to start one, exit status 1
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"sluice {argv[0]}: no local stack is running")
    assert "sluice up" in line


@pytest.mark.parametrize(
    "argv",
    [["status", "--env", "prod"], ["smoke", "--env", "prod"]],
    ids=" ".join,
)
def test_a_command_against_an_environment_not_deployed_says_how_to_deploy_it(
    tmp_path: Path, argv: list[str]
) -> None:
    # GIVEN no Terraform working data for prod
    # WHEN the command runs against it
    result = sluice(tmp_path, *argv)
    # THEN one line names the environment and `make deploy ENV=prod`, exit status 1
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "'prod'" in line
    assert "make deploy ENV=prod" in line


def test_extract_from_a_minio_that_does_not_answer_says_so(tmp_path: Path) -> None:
    # GIVEN nothing listening where MinIO should be
    closed = f"127.0.0.1:{free_port()}"
    # WHEN extract reads from it
    result = sluice(
        tmp_path,
        *("extract", "--endpoint", closed, "--insecure", "--bucket", "archive"),
        *("--access-key", "k", "--secret-key", "s", "--out", str(tmp_path / "out")),
        *("--since", "1h"),
    )
    # THEN one line names MinIO's address, exit status 1
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 1
    [line] = messages(result.stderr)
    assert line.startswith(f"sluice extract: MinIO at {closed}")


def test_down_without_a_stack_has_nothing_to_stop(tmp_path: Path) -> None:
    # WHEN `down` finds no stack THEN it says so on one line and succeeds: nothing is running
    result = sluice(tmp_path, "down")
    assert (result.returncode, result.stderr) == (
        0,
        "sluice down: no local stack is running here\n",
    )


# -- (b) a bad argument ------------------------------------------------------------------------

UNKNOWN_OPTION = [
    (["up"], "up"),
    (["down"], "down"),
    (["put", "x"], "put"),
    (["load"], "load"),
    (["smoke"], "smoke"),
    (["status"], "status"),
    (["trace", "s3://b/k"], "trace"),
    (["reconcile"], "reconcile"),
    (["redrive"], "redrive"),
    (["replay", "--since", "1h"], "replay"),
    (["chaos", "minio-down", "--seconds", "1"], "chaos minio-down"),
    (["quarantine", "list"], "quarantine list"),
    (["pause", "delivery"], "pause"),
    (["resume", "forwarder"], "resume"),
    (["chaos", "status"], "chaos status"),
    (["capacity", "--rate", "10", "--size", "1MiB"], "capacity"),
    (["extract", "--endpoint", "e:9000", "--bucket", "b", "--out", "o"], "extract"),
]


@pytest.mark.parametrize(
    ("argv", "command"), UNKNOWN_OPTION, ids=[" ".join(u[0]) for u in UNKNOWN_OPTION]
)
def test_an_unknown_option_is_reported_with_the_subcommands_usage(
    tmp_path: Path, argv: list[str], command: str
) -> None:
    # WHEN a subcommand is given an option it does not have
    result = sluice(tmp_path, *argv, "--bogus")
    # THEN the subcommand's usage, one line naming the option, exit status 2
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 2
    assert result.stderr.startswith(f"usage: sluice {command} ")
    [line] = messages(result.stderr)
    assert line.startswith(f"sluice {command}: error: unrecognized arguments: --bogus")


BAD_VALUE = [
    (["trace", "acme/x.json"], "trace", "is not s3://BUCKET/KEY"),
    (["reconcile", "--since", "1h", "--until", "2h"], "reconcile", "is not before --until"),
    (["replay", "--since", "1h", "--until", "2h"], "replay", "is not before --until"),
    (["replay", "--since", "yesterday"], "replay", "invalid time 'yesterday'"),
    (["redrive", "--since", "2h"], "redrive", "--since goes with --parked"),
    (["redrive", "--limit", "0"], "redrive", "is not a positive whole number"),
    (["load", "--rate", "0"], "load", "--rate and --seconds must be positive"),
    (["up", "--minio-endpoint", "m:9000"], "up", "a real MinIO needs"),
    (["pause", "processor"], "pause", "invalid choice: 'processor'"),
    (["capacity", "--rate", "-1", "--size", "1MiB"], "capacity", "must be positive"),
    (["bogus"], "", "invalid choice: 'bogus'"),
    ([], "", "the following arguments are required: COMMAND"),
]


@pytest.mark.parametrize(
    ("argv", "command", "says"), BAD_VALUE, ids=[" ".join(b[0]) or "none" for b in BAD_VALUE]
)
def test_a_bad_value_is_a_usage_error_of_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    command: str,
    says: str,
) -> None:
    # GIVEN no stack: a value is judged before anything is read
    monkeypatch.setenv("SLUICE_ROOT", str(tmp_path))
    # WHEN a command is given a value it cannot use (in process: the unknown options above run
    # the command itself)
    try:
        status = main.main(argv)
    except SystemExit as exit_:  # argparse's own
        status = exit_.code
    # THEN one line names the value (after the usage, from argparse), exit status 2
    assert status == 2
    [line] = messages(capsys.readouterr().err)
    assert line.startswith(f"sluice {command}".rstrip() + ":")
    assert says in line


# -- --debug, help texts, make smoke -----------------------------------------------------------


@pytest.mark.parametrize("argv", [["--debug", "status"], ["status", "--debug"]])
def test_debug_shows_the_traceback_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    # GIVEN no local stack
    monkeypatch.setenv("SLUICE_ROOT", str(tmp_path))
    # WHEN a command fails with --debug, before or after the subcommand
    # THEN the error is raised, not summarised
    with pytest.raises(NoStackError):
        main.main(argv)


def test_debug_shows_an_unexpected_error_whole_and_without_it_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a command that fails in a way nobody planned for
    def broken(args: object, root: Path) -> None:
        raise KeyError("window")

    monkeypatch.setattr(deployment, "resolve", broken)
    monkeypatch.setenv("SLUICE_ROOT", str(tmp_path))
    # WHEN it runs without --debug THEN one line, naming the error and --debug, exit status 1
    assert main.main(["status"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        "sluice status: KeyError: 'window' (unexpected: `sluice --debug …` shows where it happened)"
    )
    # ... and with --debug the error itself
    with pytest.raises(KeyError):
        main.main(["--debug", "status"])


def test_terraforms_error_is_summarised_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a working directory for prod, whose backend Terraform says is not initialised, in its
    # boxed, coloured, multi-paragraph way
    (tmp_path / "build" / "terraform" / "prod").mkdir(parents=True)
    stderr = (
        "\x1b[31m╷\x1b[0m\x1b[0m\n"
        "\x1b[31m│\x1b[0m \x1b[0m\x1b[1m\x1b[31mError: \x1b[0m\x1b[0m\x1b[1mBackend "
        'initialization required, please run "terraform init"\x1b[0m\n'
        "\x1b[31m│\x1b[0m \x1b[0m\n"
        "\x1b[31m│\x1b[0m \x1b[0mReason: Initial configuration of the requested backend\n"
        "\x1b[31m╵\x1b[0m\x1b[0m\n"
    )

    def terraform(argv: list[str], **_: object) -> None:
        raise subprocess.CalledProcessError(1, argv, output="", stderr=stderr)

    monkeypatch.setattr(subprocess, "run", terraform)
    # WHEN its outputs are read
    with pytest.raises(DeploymentError) as raised:
        deployment.from_terraform(tmp_path, "prod")
    # THEN one line: the environment, Terraform's error, and what to do
    message = str(raised.value)
    assert "\n" not in message
    assert "\x1b" not in message
    assert message.startswith(
        "cannot read the Terraform output of environment 'prod' (Error: Backend initialization "
        'required, please run "terraform init"): run `make deploy ENV=prod` first'
    )


def test_help_describes_down_and_redrive_for_an_operator(tmp_path: Path) -> None:
    # WHEN the operator asks for help
    down = sluice(tmp_path, "down", "--help").stdout
    redrive = sluice(tmp_path, "redrive", "--help").stdout
    # THEN down says what it does, and redrive describes the work, not the code doing it
    assert "Stop the local stack" in down
    assert "delivery DLQ" in redrive
    for internal in ("delivery.redriving", "`live` alias", "StartMessageMoveTask", "staged_event"):
        assert internal not in redrive


@pytest.mark.parametrize(
    ("variables", "expected"),
    [([], "sluice smoke --local"), (["ENV=prod"], "sluice smoke --env prod")],
    ids=["no-ENV", "ENV=prod"],
)
def test_make_smoke_runs_against_the_local_stack_unless_env_is_given(
    variables: list[str], expected: str
) -> None:
    # WHEN `make smoke` is asked what it would run, with or without ENV
    environment = {name: value for name, value in os.environ.items() if name != "ENV"}
    planned = subprocess.run(  # noqa: S603  # make, in this checkout
        ["make", "--no-print-directory", "-n", "smoke", *variables],  # noqa: S607  # from PATH
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # THEN without ENV it is the local stack, as `make run` and `make load` use
    assert planned.splitlines()[-1].endswith(expected)
