"""Build the Lambda packages: one deterministic zip per function, for python3.12 on x86_64 or arm64.

    python -m infrastructure.packaging [--arch x86_64|arm64] [--out build/lambda]
                                       [--cache build/package-cache] [--refresh]

Writes `<out>/<function>.zip` for every function in tunables.json (forwarder, processor, requeue,
delivery, redrive), the files `infrastructure/terraform/lambda.tf` deploys; `--arch` must match
Terraform's `lambda_architecture`.

What a zip holds (each is a full, standalone package; all five are the same bytes, since every
function runs the same code with the same dependencies and differs only in its handler):

- Sluice's function code: the `transform` and `delivery` packages, and of `infrastructure` only
  what the functions read at run time (`__init__.py`, `tunables.py`, `environment.py`,
  `tunables.json`, `tunables.schema.json`, `schemas/`) — never `local/`, `cli/` or `terraform/`.
- The runtime dependencies exactly as locked: `requirements/lambda.txt` (exported from uv.lock,
  see infrastructure/lock.py), every file checked against its hash, installed by uv for CPython
  3.12 on manylinux_2_28 (or older) of the target machine, binary wheels only, environment
  markers evaluated for that Python and machine rather than the one running the build.
- One change to a dependency (infrastructure/deferred_imports.py): minio's admin API and its
  client's bucket-configuration classes, which no function uses, imported on first use instead
  of at `import minio`, so no cold start pays for them.
- Bytecode for every module, compiled by the runtime's own Python version (see
  `runtime_python`) into `__pycache__/<name>.cpython-312.pyc`, where that interpreter looks.
  Lambda's /var/task is read-only, so without it every cold start compiles every module it
  imports (botocore, Powertools, Sluice) in memory and throws the result away. The `.pyc` files
  are `unchecked-hash`: they name no source mtime (the zip's are all 1980) and the interpreter
  does not re-read the source to check them. Not: the build's own `__pycache__` or `*.pyc`
  (an installer's, for the wrong version), or the `bin/` console scripts an installer writes,
  whose `#!` line names the interpreter that ran the build (no function runs them).

boto3 and botocore are packaged, pinned by the lock, although the python3.12 runtime
ships its own. AWS's Lambda best practices ask for it ("to have full control of the dependencies
your function uses, package all of your dependencies with your deployment package"): the
runtime's copy is upgraded by AWS on its own schedule, may lag behind the locked version, and would
make the code that runs differ from the code the tests ran. Powertools' Tracer also patches
botocore, so the two are best shipped as a tested pair. The cost is about 17 MB of the 25 MB zip
(botocore's service models), well inside the limits checked below.

Deterministic: the same code and the same wheels give the same bytes — entries sorted, every
timestamp 1980-01-01 00:00, permissions 0644 (0755 for directories and executables), no extra
fields or comments, one compression level, bytecode compiled with a fixed hash seed (set
constants are written in hash order) by one process in file order, under the path Lambda
unpacks to. (Deflate's output depends on the zlib build and bytecode on the interpreter's
patch release, so "same" means the same machine image.)

Downloaded wheels are kept in uv's cache under `<cache>` (default build/package-cache). A build
first installs from the cache alone (`--offline`): fast, and offline once the cache holds the
locked wheels. Only if that fails (first build, a new lock) does it ask the index; `--refresh`
asks the index first. The versions come from the lock either way. A lock file serializes
concurrent builds sharing a cache.

Lambda's limits are checked: 50 MB zipped for a direct upload, 250 MB unzipped.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from infrastructure import deferred_imports, lock

ROOT: Final = Path(__file__).resolve().parent.parent
"""The checkout: where pyproject.toml and the function code are."""

PYTHON_VERSION: Final = "3.12"
"""The runtime in lambda.tf (python3.12)."""

PYTHON_ENV: Final = "SLUICE_LAMBDA_PYTHON"
"""Names the runtime's interpreter when `runtime_python` would not find it (`--python` too)."""

TASK_ROOT: Final = "/var/task"
"""Where Lambda unpacks the zip (LAMBDA_TASK_ROOT): the source path the bytecode records. The
interpreter replaces it with the real path when it loads a `.pyc`, so only tools reading the
files themselves see it."""

ARCHITECTURES: Final = {
    "x86_64": "x86_64-manylinux_2_28",
    "arm64": "aarch64-manylinux_2_28",
}
"""Lambda's architectures and uv's name for the platform their runtime (Amazon Linux 2023, glibc
2.34) runs: wheels tagged manylinux_2_28, manylinux2014 or older install."""

REQUIREMENTS: Final = Path("requirements") / "lambda.txt"
"""The runtime dependencies as locked (infrastructure/lock.py writes it from uv.lock)."""

MAX_ZIPPED_BYTES: Final = 50 * 1024 * 1024
"""Lambda's limit for a zip uploaded directly (Terraform's `filename`)."""

MAX_UNZIPPED_BYTES: Final = 250 * 1024 * 1024
"""Lambda's limit for a function's unzipped code and layers (262,144,000 bytes)."""

CODE_PACKAGES: Final = ("transform", "delivery")
"""Sluice packages the functions import whole."""

INFRASTRUCTURE_FILES: Final = (
    "__init__.py",
    "environment.py",
    "payload_tables.py",
    "tunables.py",
    "tunables.json",
    "tunables.schema.json",
)
INFRASTRUCTURE_DIRS: Final = ("schemas",)
"""What of `infrastructure` the functions read; the rest (local/, cli/, terraform/) stays out."""

ZIP_DATE: Final = (1980, 1, 1, 0, 0, 0)
"""The earliest date a zip can hold; every entry gets it."""

COMPRESS_LEVEL: Final = 6
FILE_MODE: Final = 0o644
EXECUTABLE_MODE: Final = 0o755
INSTALLER_OUTPUT_LINES: Final = 40
INSTALLER_LINE_CHARS: Final = 300
"""How much of uv's output a failure shows."""


class PackagingError(Exception):
    """A package could not be built; the message names what failed."""


@dataclass(frozen=True)
class Package:
    function: str
    path: Path
    zipped_bytes: int
    unzipped_bytes: int
    sha256: str

    @property
    def source_code_hash(self) -> str:
        """What Terraform's filebase64sha256() computes for this zip."""
        return base64.b64encode(bytes.fromhex(self.sha256)).decode("ascii")


def functions(root: Path = ROOT) -> dict[str, str]:
    """Function name → handler, from tunables.json."""
    with (root / "infrastructure" / "tunables.json").open(encoding="utf-8") as f:
        spec = json.load(f)["functions"]
    return {name: str(value["handler"]) for name, value in spec.items()}


def locked_versions(root: Path = ROOT) -> dict[str, str]:
    """Distribution name (normalized) → version, as requirements/lambda.txt pins them."""
    return lock.pins((root / REQUIREMENTS).read_text(encoding="utf-8"), markers=False)


def build_packages(
    arch: str,
    out: Path,
    cache: Path,
    *,
    refresh: bool = False,
    root: Path = ROOT,
    python: str | None = None,
) -> list[Package]:
    """Build every function's zip into `out`, its bytecode compiled by `python` (default:
    `runtime_python()`); raises PackagingError naming what failed."""
    if arch not in ARCHITECTURES:
        raise PackagingError(
            f"unknown architecture {arch!r}; expected one of {list(ARCHITECTURES)}"
        )
    interpreter = runtime_python(python)
    handlers = functions(root)
    requirements = root / REQUIREMENTS
    if not requirements.is_file():
        raise PackagingError(f"no {requirements}: run `make lock` (it exports it from uv.lock)")
    started = time.monotonic()
    _say(f"packaging {len(handlers)} functions for python{PYTHON_VERSION} on {arch}")
    with tempfile.TemporaryDirectory(prefix="sluice-package-") as scratch:
        tree = Path(scratch) / "tree"
        tree.mkdir()
        _install_dependencies(requirements, arch, tree, cache, refresh=refresh)
        _clean(tree)
        _defer_unused_imports(tree)
        _copy_code(root, tree)
        _check_handlers(handlers, tree)
        _compile(tree, interpreter)
        unzipped = _unzipped_size(tree)
        _say(f"tree: {_megabytes(unzipped)} unzipped")
        if unzipped > MAX_UNZIPPED_BYTES:
            raise PackagingError(
                f"the package is {_megabytes(unzipped)} unzipped, over Lambda's limit of "
                f"{_megabytes(MAX_UNZIPPED_BYTES)}; trim the dependencies in pyproject.toml"
            )
        out.mkdir(parents=True, exist_ok=True)
        first = Path(scratch) / "package.zip"
        _write_zip(tree, first)
        zipped = first.stat().st_size
        if zipped > MAX_ZIPPED_BYTES:
            raise PackagingError(
                f"the package is {_megabytes(zipped)} zipped, over Lambda's limit of "
                f"{_megabytes(MAX_ZIPPED_BYTES)} for a direct upload; trim the dependencies"
            )
        digest = _sha256(first)
        packages = []
        for name in sorted(handlers):
            target = out / f"{name}.zip"
            partial = target.with_name(f".{target.name}.partial")
            shutil.copyfile(first, partial)
            partial.chmod(FILE_MODE)
            partial.replace(target)
            package = Package(name, target, zipped, unzipped, digest)
            packages.append(package)
            _say(
                f"wrote {target}: {_megabytes(zipped)}, sha256 {digest} "
                f"(source_code_hash {package.source_code_hash})"
            )
    _say(f"done in {time.monotonic() - started:.1f} s")
    return packages


def _install_dependencies(
    requirements: Path, arch: str, tree: Path, cache: Path, *, refresh: bool
) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    install = [
        "pip",
        "install",
        "--no-config",  # no user or system uv.toml: the lock and these flags decide
        "--target",
        str(tree),
        "--python-platform",
        ARCHITECTURES[arch],
        "--python-version",
        PYTHON_VERSION,
        "--only-binary",
        ":all:",
        "--require-hashes",
        "--cache-dir",
        str(cache),
        "--requirements",
        str(requirements),
    ]
    with _locked(cache / f"{arch}.lock"):
        if not refresh:
            _say(f"installing {requirements.name} from the cache {cache}")
            if _uv([*install, "--offline"]).returncode == 0:
                return
            _say("the cache does not hold every locked wheel; downloading them")
            _empty(tree)
        else:
            _say("refreshing the cache from the index")
        _check_installer(
            _uv([*install, *(["--refresh"] if refresh else [])]),
            f"installing the locked dependencies for {arch}",
        )


def _uv(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return lock.uv(*args)
    except lock.LockError as error:
        raise PackagingError(str(error)) from error


def _check_installer(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode == 0:
        return
    output = (result.stdout + result.stderr).strip().splitlines()[-INSTALLER_OUTPUT_LINES:]
    raise PackagingError(
        f"{what} failed (exit {result.returncode}):\n  $ {' '.join(map(str, result.args))}\n"
        + "\n".join(f"  {_shorten(line)}" for line in output)
    )


def _shorten(line: str) -> str:
    return line if len(line) <= INSTALLER_LINE_CHARS else f"{line[:INSTALLER_LINE_CHARS]}…"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialize builds that share a cache (parallel test workers, two terminals)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _empty(folder: Path) -> None:
    shutil.rmtree(folder)
    folder.mkdir()


def _clean(tree: Path) -> None:
    """Drop what no function needs and what would differ between builds."""
    shutil.rmtree(tree / "bin", ignore_errors=True)
    for cache in sorted(tree.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)
    for compiled in tree.rglob("*.pyc"):
        compiled.unlink()


def _defer_unused_imports(tree: Path) -> None:
    try:
        rewritten = deferred_imports.defer_unused_imports(tree)
    except deferred_imports.DeferralError as err:
        raise PackagingError(str(err)) from err
    _say(f"deferred to first use: imports in {', '.join(str(p) for p in rewritten)}")


def _copy_code(root: Path, tree: Path) -> None:
    for package in (*CODE_PACKAGES, "infrastructure"):
        if (tree / package).exists():
            raise PackagingError(f"a dependency installs a top-level {package!r}, Sluice's own")
    for package in CODE_PACKAGES:
        _copy_folder(root / package, tree / package)
    source = root / "infrastructure"
    (tree / "infrastructure").mkdir()
    for name in INFRASTRUCTURE_FILES:
        shutil.copyfile(source / name, tree / "infrastructure" / name)
    for name in INFRASTRUCTURE_DIRS:
        _copy_folder(source / name, tree / "infrastructure" / name)
    _say(
        f"added the function code: {', '.join(CODE_PACKAGES)}, infrastructure "
        f"({', '.join((*INFRASTRUCTURE_FILES, *(f'{name}/' for name in INFRASTRUCTURE_DIRS)))})"
    )


def _copy_folder(source: Path, destination: Path) -> None:
    if not source.is_dir():
        raise PackagingError(f"missing function code: {source}")
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _check_handlers(handlers: dict[str, str], tree: Path) -> None:
    for name, handler in handlers.items():
        module = handler.rpartition(".")[0]
        if not (tree / (module.replace(".", "/") + ".py")).is_file():
            raise PackagingError(
                f"{name}'s handler {handler} has no module {module} in the package"
            )


def runtime_python(configured: str | None = None) -> str:
    """The Lambda runtime's Python version (PYTHON_VERSION) on this machine: `configured`, else
    $SLUICE_LAMBDA_PYTHON, else the first that runs of python3.12 on PATH, the system's, and
    pyenv's. Raises PackagingError naming what it tried: bytecode of another version would be
    ignored (wrong cache tag) or refused (wrong magic number) by the runtime."""
    name = f"python{PYTHON_VERSION}"
    chosen = configured or os.environ.get(PYTHON_ENV)
    if chosen:
        candidates = [chosen]
    else:
        candidates = [found for found in [shutil.which(name)] if found]
        candidates += [f"/usr/bin/{name}", f"/usr/local/bin/{name}"]
        pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
        candidates += sorted(
            str(path) for path in pyenv_root.glob(f"versions/{PYTHON_VERSION}*/bin/{name}")
        )
    for candidate in candidates:
        if _python_version(candidate) == PYTHON_VERSION:
            return candidate
    if chosen:
        raise PackagingError(
            f"{chosen} (from {'--python' if configured else '$' + PYTHON_ENV}) is not a working "
            f"Python {PYTHON_VERSION}, the Lambda runtime's version ({name} in lambda.tf) that "
            "must compile the packaged bytecode"
        )
    raise PackagingError(
        f"no {name} interpreter found (tried {', '.join(candidates)}); the packaged bytecode "
        f"must be compiled by the Lambda runtime's version: install Python {PYTHON_VERSION} "
        f"(apt, `pyenv install {PYTHON_VERSION}`) or name it with ${PYTHON_ENV} or "
        "`make package LAMBDA_PYTHON=…`"
    )


def _python_version(interpreter: str) -> str | None:
    """`major.minor` of `interpreter`, or None when it does not run."""
    try:
        result = subprocess.run(  # noqa: S603  # probing a named interpreter, fixed argv, no shell
            [interpreter, "-I", "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


COMPILE: Final = """
import compileall, py_compile, sys
ok = compileall.compile_dir(
    sys.argv[1],
    ddir=sys.argv[2],
    quiet=1,
    workers=1,
    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
)
sys.exit(0 if ok else 1)
"""
"""Run by the runtime's interpreter. One worker: every file compiled in the same order in one
process, so nothing about the process (what it compiled before) can differ between builds."""


def _compile(tree: Path, interpreter: str) -> None:
    """Bytecode for every module in `tree`, by the runtime's version, as the docstring says."""
    started = time.monotonic()
    result = subprocess.run(  # noqa: S603  # the runtime interpreter, a fixed script, no shell
        [interpreter, "-S", "-s", "-c", COMPILE, str(tree), TASK_ROOT],
        # Not -I/-E: they would ignore PYTHONHASHSEED. A fixed seed orders set and frozenset
        # constants the same way in every build; nothing else of this environment is kept.
        env={"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        check=False,
    )
    _check_installer(result, f"compiling the bytecode with {interpreter}")
    _say(f"compiled the bytecode with {interpreter} in {time.monotonic() - started:.1f} s")


def _entries(tree: Path) -> list[tuple[str, Path]]:
    """Every folder (`name/`) and file under tree, sorted by its name in the zip."""
    return sorted(
        (path.relative_to(tree).as_posix() + ("/" if path.is_dir() else ""), path)
        for path in tree.rglob("*")
    )


def _unzipped_size(tree: Path) -> int:
    return sum(path.stat().st_size for path in tree.rglob("*") if path.is_file())


def _write_zip(tree: Path, destination: Path) -> None:
    with zipfile.ZipFile(destination, "w") as archive:
        for name, path in _entries(tree):
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise PackagingError(f"symbolic link in the package: {name}")
            if stat.S_ISDIR(mode):
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
                info.create_system = 3  # Unix, so the permissions below apply
                info.external_attr = ((stat.S_IFDIR | EXECUTABLE_MODE) << 16) | 0x10  # MS-DOS dir
                archive.writestr(info, b"", compress_type=zipfile.ZIP_STORED)
                continue
            permissions = EXECUTABLE_MODE if mode & 0o111 else FILE_MODE
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | permissions) << 16
            archive.writestr(
                info,
                path.read_bytes(),
                compress_type=zipfile.ZIP_DEFLATED,
                compresslevel=COMPRESS_LEVEL,
            )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _say(message: str) -> None:
    print(f"[package] {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infrastructure.packaging",
        description="Build one deterministic zip per Lambda function (python3.12).",
    )
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="x86_64")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "lambda")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "package-cache")
    parser.add_argument(
        "--python",
        help=f"the Lambda runtime's interpreter (python{PYTHON_VERSION}) that compiles the "
        f"bytecode (default: ${PYTHON_ENV}, else found on PATH, the system or pyenv)",
    )
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="ask the index first, not the cache (the versions are the lock's either way)",
    )
    args = parser.parse_args(argv)
    try:
        build_packages(
            args.arch, args.out, args.cache.resolve(), refresh=args.refresh, python=args.python
        )
    except PackagingError as error:
        print(f"[package] FAILED: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
