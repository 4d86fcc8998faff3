"""`sluice chaos …`: arm chaos on the running local stack, for gamedays (DESIGN §6).

    sluice chaos minio-down --seconds N           MinIO unreachable for delivery and redrive
    sluice chaos minio-read-only --seconds N      MinIO answers reads, refuses every write
    sluice chaos throttle --percent P --seconds N every Firehose stream refuses P % of records
    sluice chaos duplicate-events --seconds N     every S3 event twice, every ingest message
                                                  redelivered once
    sluice chaos crash forwarder|processor|delivery [--after-calls K] [--phase after|before|hang]
                                                  [--times N]
    sluice chaos corrupt-upload --count K         the next K archive uploads corrupted
    sluice chaos status | clear

Each talks to the control API of the `sluice up` process (`control_endpoint` in stack.json;
infrastructure/local/stack/chaos.py). Seconds are wall-clock seconds, not divided by the stack's
`--time-scale`. Against a deployment (`--env`) every subcommand refuses: chaos lives in the
local runtime and its proxies, which AWS does not have.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Final

from infrastructure.cli import deployment
from infrastructure.local.stack.chaos import CHAOS_FUNCTIONS, PHASES
from infrastructure.local.stack.stack_file import read_stack

TIMEOUT_SECONDS: Final = 10.0
WALL_CLOCK: Final = "wall-clock seconds (not divided by the stack's --time-scale)"


def register(commands: Any) -> None:
    chaos = commands.add_parser(
        "chaos",
        help="arm chaos on the local stack (MinIO down, throttling, duplicates, crashes, "
        "corrupted uploads)",
        description="Gameday chaos on the running local stack, through its control API. Chaos "
        f"lives in the runtime and proxies, never in handler code. Seconds are {WALL_CLOCK}. "
        "Local stack only: with --env it refuses.",
    )
    actions = chaos.add_subparsers(dest="chaos", required=True, metavar="CHAOS")

    def action(name: str, summary: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(
            name, help=summary, description=summary
        )
        deployment.add_arguments(parser)
        parser.add_argument("--json", action="store_true", help="the chaos status as JSON")
        parser.set_defaults(run=run, action=name)
        return parser

    down = action(
        "minio-down",
        "cut the TCP proxy in front of MinIO (open connections reset, new ones refused): "
        "delivery and redrive see MinIO down; restored after --seconds",
    )
    down.add_argument("--seconds", type=float, required=True, help=WALL_CLOCK)
    read_only = action(
        "minio-read-only",
        "MinIO answers reads and HEADs but refuses every write (a full disk, a policy change): "
        "the MinIO secret holds a read-only identity's keys; restored after --seconds",
    )
    read_only.add_argument("--seconds", type=float, required=True, help=WALL_CLOCK)
    throttle = action(
        "throttle", "every Firehose stream refuses --percent of records for --seconds"
    )
    throttle.add_argument("--percent", type=float, required=True, help="0 < P <= 100")
    throttle.add_argument("--seconds", type=float, required=True, help=WALL_CLOCK)
    duplicates = action(
        "duplicate-events",
        "for --seconds every S3 event is delivered twice (a second ingest message; a second "
        "asynchronous invocation for staging notifications) and every ingest message is "
        "redelivered once (same messageId, ApproximateReceiveCount + 1)",
    )
    duplicates.add_argument("--seconds", type=float, required=True, help=WALL_CLOCK)
    crash = action(
        "crash",
        "kill (or hang) the worker of the function's next invocation(s) at their K-th SDK call",
    )
    crash.add_argument("function", choices=CHAOS_FUNCTIONS)
    crash.add_argument(
        "--after-calls",
        type=int,
        default=1,
        metavar="K",
        help="K (default 1); 0: as the invocation starts, before any handler code",
    )
    crash.add_argument(
        "--phase",
        choices=PHASES,
        default="after",
        help="after (default): once the K-th call has been answered (AWS acted, the handler "
        "never learns); before: as the K-th call is about to be sent (K-1 calls reached AWS); "
        "hang: the worker stops dead before the K-th call, until killed at the function's "
        "timeout (an invocation past its timeout)",
    )
    crash.add_argument(
        "--times", type=int, default=1, metavar="N", help="the next N invocations (default 1)"
    )
    corrupt = action(
        "corrupt-upload",
        "corrupt the next --count archive uploads between Sluice's hashing and the minio "
        "client (delivery must catch, delete and retry each)",
    )
    corrupt.add_argument("--count", type=int, required=True, metavar="K")
    action("status", "what chaos is armed, and for how long")
    action("clear", "disarm every chaos at once (MinIO restored, throttling off, …)")


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    if args.action in {"minio-down", "minio-read-only", "duplicate-events"}:
        return {"seconds": args.seconds}
    if args.action == "throttle":
        return {"percent": args.percent, "seconds": args.seconds}
    if args.action == "crash":
        return {
            "function": args.function,
            "after_calls": args.after_calls,
            "phase": args.phase,
            "times": args.times,
        }
    if args.action == "corrupt-upload":
        return {"count": args.count}
    return {}


def run(args: argparse.Namespace, root: Path) -> int:
    command = f"sluice chaos {args.action}"
    if getattr(args, "env", None):
        print(
            f"{command}: chaos runs on the local stack only (it lives in the local Lambda "
            f"runtime and proxies); refused against the deployment {args.env!r}",
            file=sys.stderr,
        )
        return 2
    stack = read_stack(root)
    if stack.control_endpoint is None:
        print(
            f"{command}: the running stack has no chaos control API (started by an older "
            "Sluice); restart it with `sluice down` and `sluice up`",
            file=sys.stderr,
        )
        return 1
    try:
        if args.action == "status":
            status = _call(stack.control_endpoint, "GET", "/chaos")
        else:
            status = _call(
                stack.control_endpoint, "POST", f"/chaos/{args.action}", _arguments(args)
            )
    except ControlError as err:
        print(f"{command}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(status) if args.json else status_text(status))
    return 0


class ControlError(RuntimeError):
    """The control API refused the request or could not be reached."""


def _call(
    endpoint: str, method: str, path: str, arguments: dict[str, Any] | None = None
) -> dict[str, Any]:
    data = None if arguments is None else json.dumps(arguments).encode()
    request = urllib.request.Request(  # noqa: S310  # the stack's own loopback http endpoint
        endpoint + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310  # as above
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read()).get("error", str(err))
        except ValueError:
            message = str(err)
        raise ControlError(message) from err
    except (urllib.error.URLError, OSError) as err:
        raise ControlError(
            f"cannot reach the chaos control API at {endpoint} ({err}): is `sluice up` running?"
        ) from err


def status_text(status: dict[str, Any]) -> str:
    def left(entry: dict[str, Any]) -> str:
        return f"{entry['seconds_left']:.0f} s left"

    minio, read_only, throttle, duplicates = (
        status["minio_down"],
        status["minio_read_only"],
        status["throttle"],
        status["duplicate_events"],
    )
    crashes = ", ".join(
        f"{function} at SDK call {c['after_calls']} ({c['phase']}), {c['times']} to cause"
        for function, c in status["crash"].items()
    )
    corrupt = status["corrupt_upload"]["count_left"]
    return "\n".join(
        [
            "chaos on the local stack",
            f"  minio-down        {'cut, ' + left(minio) if minio['armed'] else 'off'}",
            f"  minio-read-only   {'on, ' + left(read_only) if read_only['armed'] else 'off'}",
            "  throttle          "
            + (
                f"{throttle['percent']:g} % of records, {left(throttle)}"
                if throttle["armed"]
                else "off"
            ),
            f"  duplicate-events  {'on, ' + left(duplicates) if duplicates['armed'] else 'off'}",
            f"  crash             {crashes or 'none armed'}",
            f"  corrupt-upload    {f'{corrupt} uploads to corrupt' if corrupt else 'off'}",
        ]
    )
