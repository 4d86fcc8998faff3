"""The Lambda packages `make package` builds: repeatable, importable on python3.12 from their
own bytecode, built for the right machine, inside Lambda's limits, and carrying only what the
functions need.

The locked wheels are cached under build/package-cache (gitignored): the first run downloads
them, later runs build offline.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from infrastructure.bench import functions as bench_functions
from infrastructure.packaging import (
    MAX_UNZIPPED_BYTES,
    MAX_ZIPPED_BYTES,
    PYTHON_VERSION,
    ROOT,
    ZIP_DATE,
    PackagingError,
    build_packages,
    functions,
    locked_versions,
    runtime_python,
)

pytestmark = pytest.mark.slow

PACKAGE_CACHE = ROOT / "build" / "package-cache"
FUNCTIONS = functions()
ARCHES = ("x86_64", "arm64")
ELF_MACHINES = {"x86_64": 0x3E, "arm64": 0xB7}
WHEEL_MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}

Build = Callable[[str], Path]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """Each architecture's packages, built once per module (per worker)."""
    built: dict[str, Path] = {}

    def packages(arch: str) -> Path:
        if arch not in built:
            out = tmp_path_factory.mktemp(f"lambda-{arch}")
            build_packages(arch, out, PACKAGE_CACHE)
            built[arch] = out
        return built[arch]

    return packages


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def python312() -> str:
    """The Lambda runtime's Python (3.12) on this machine, as packaging finds it."""
    try:
        return runtime_python()
    except PackagingError as error:
        pytest.fail(str(error))


IMPORT_CHECK = """
import hashlib, importlib, json, pathlib, sys
package, module_name = sys.argv[1], sys.argv[2]
def bytecode():
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in pathlib.Path(package).rglob("*.pyc")}
before = bytecode()
sys.path.insert(0, package)
module = importlib.import_module(module_name)
# the compiled extensions, which some packages would silently replace with pure Python
import _cffi_backend, fastavro._read, wrapt._wrappers
import boto3
boto3.client("s3")  # botocore's service data is in the package
from infrastructure.tunables import load_tunables
load_tunables()  # tunables.json, its schema and the Avro schemas are in the package
names = ["boto3", "botocore", "fastavro", "wrapt", "aws_lambda_powertools", "aws_xray_sdk",
         "minio", "argon2", "Crypto", "transform", "delivery", "infrastructure"]
importlib.import_module("aws_xray_sdk")
print(json.dumps({
    "version": list(sys.version_info[:2]),
    "handler": callable(getattr(module, "lambda_handler", None)),
    "path": sys.path,
    "origins": {name: importlib.import_module(name).__file__ for name in names},
    "cached": module.__cached__,
    # bytecode the interpreter did not accept (another version's magic number, a stale
    # source hash) would have been compiled again and written over it, or beside it
    "bytecode_unchanged": bytecode() == before,
}))
"""


@pytest.mark.parametrize("arch", ARCHES)
def test_building_twice_gives_byte_identical_zips(build: Build, arch: str, tmp_path: Path) -> None:
    # GIVEN the packages built once
    first = build(arch)

    # WHEN they are built again, by the command `make package` runs, into another folder
    again = tmp_path / "again"
    result = subprocess.run(  # noqa: S603  # this interpreter and a fixed argv, no shell
        [
            sys.executable,
            "-m",
            "infrastructure.packaging",
            *("--arch", arch, "--out", str(again), "--cache", str(PACKAGE_CACHE)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    # THEN every zip has the same bytes, and the command reported each one's sha256
    assert result.returncode == 0, result.stdout + result.stderr
    for name in FUNCTIONS:
        digest = sha256(first / f"{name}.zip")
        assert sha256(again / f"{name}.zip") == digest, name
        assert f"{name}.zip" in result.stdout
        assert digest in result.stdout

    # AND the entries carry nothing that varies: sorted, one date, fixed permissions
    with zipfile.ZipFile(first / "forwarder.zip") as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert {info.date_time for info in infos} == {ZIP_DATE}
    assert {info.external_attr >> 16 & 0o7777 for info in infos} <= {0o644, 0o755}
    assert all(info.external_attr >> 16 & 0o7777 == 0o755 for info in infos if info.is_dir())
    assert all(not info.extra and not info.comment for info in infos)


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_the_x86_64_package_imports_each_handler_on_python312(
    build: Build, function: str, tmp_path: Path
) -> None:
    # GIVEN the x86_64 package extracted as Lambda does, and a Python 3.12 interpreter
    interpreter = python312()
    package = tmp_path / "task"
    with zipfile.ZipFile(build("x86_64") / f"{function}.zip") as archive:
        archive.extractall(package)
    handler = FUNCTIONS[function]
    module = handler.rpartition(".")[0]
    spec = json.loads((ROOT / "infrastructure" / "tunables.json").read_text())["functions"]
    env = {
        **spec[function]["environment"],
        **{name: f"sluice-test-{name.lower()}" for name in spec[function]["resource_environment"]},
        "AWS_LAMBDA_FUNCTION_NAME": f"sluice-test-{function}",  # so Tracer enables and patches
        "LAMBDA_TASK_ROOT": str(package),
        "AWS_REGION": "eu-west-2",
        "AWS_DEFAULT_REGION": "eu-west-2",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "HOME": str(tmp_path),
    }

    # WHEN its handler module is imported with only the package on sys.path (-S: no
    # site-packages; -I: no PYTHON* variables, user site or current directory)
    result = subprocess.run(  # noqa: S603  # a found interpreter and a fixed argv, no shell
        [interpreter, "-I", "-S", "-c", IMPORT_CHECK, str(package), module],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    # THEN it imports, has lambda_handler, and everything came from the package, the bytecode
    # included: the packaged .pyc files were used as they are
    assert result.returncode == 0, f"{handler} does not import:\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["version"] == [3, 12]
    assert Path(report["cached"]).is_relative_to(package), report["cached"]
    assert report["bytecode_unchanged"], "the packaged bytecode was compiled again on import"
    assert report["handler"], f"{module} has no callable lambda_handler"
    assert not [p for p in report["path"] if "-packages" in p], report["path"]
    for name, origin in report["origins"].items():
        assert Path(origin).is_relative_to(package), f"{name} came from {origin}"


DIST_INFO = re.compile(r"^(?P<name>[^/]+)-(?P<version>[^/-]+)\.dist-info/$")


@pytest.mark.parametrize("arch", ARCHES)
def test_packages_carry_exactly_the_locked_versions(build: Build, arch: str) -> None:
    # GIVEN the packages for one architecture, and the versions requirements/lambda.txt pins
    locked = locked_versions()

    # WHEN the distributions in a zip are read from its *.dist-info folders
    with zipfile.ZipFile(build(arch) / "delivery.zip") as archive:
        packaged = {
            canonicalize_name(match["name"]): match["version"]
            for info in archive.infolist()
            if (match := DIST_INFO.match(info.filename))
        }

    # THEN every packaged distribution is locked, at the locked version, and every locked one
    # that applies to python3.12 on Linux is packaged (pycparser's marker excludes only PyPy)
    assert packaged == locked
    assert {"boto3", "botocore", "aws-lambda-powertools", "fastavro", "minio"} <= packaged.keys()


WHEEL_TAG = re.compile(r"^(?P<python>[\w.]+)-(?P<abi>\w+)-(?P<platform>[\w.]+)$")
PURE_PYTHON = {("py3", "none", "any"), ("py2.py3", "none", "any")}


def runs_on_cp312(tag: re.Match[str], manylinux: re.Pattern[str]) -> bool:
    """py3-none-any, cp312-cp312-<manylinux>, or cp3X-abi3-<manylinux> with X <= 12."""
    python, abi, platform = tag["python"], tag["abi"], tag["platform"]
    if (python, abi, platform) in PURE_PYTHON:
        return True
    if not manylinux.match(platform):
        return False
    stable = re.fullmatch(r"cp3(\d+)", python)
    return (python, abi) == ("cp312", "cp312") or (
        abi == "abi3" and stable is not None and int(stable[1]) <= 12
    )


@pytest.mark.parametrize("arch", ARCHES)
def test_wheels_and_binaries_are_built_for_the_target_machine(build: Build, arch: str) -> None:
    # GIVEN the packages for one architecture
    machine = WHEEL_MACHINES[arch]
    manylinux = re.compile(rf"^manylinux(1|2010|2014|_2_\d+)_{machine}$")

    # WHEN their wheels' tags and their ELF files are read
    with zipfile.ZipFile(build(arch) / "forwarder.zip") as archive:
        wheels = {
            info.filename: [
                line.split(":", 1)[1].strip()
                for line in archive.read(info).decode().splitlines()
                if line.startswith("Tag:")
            ]
            for info in archive.infolist()
            if re.fullmatch(r"[^/]+\.dist-info/WHEEL", info.filename)
        }
        elf_machines = {
            info.filename: int.from_bytes(head[18:20], "little")
            for info in archive.infolist()
            if not info.is_dir() and (head := archive.open(info).read(20)).startswith(b"\x7fELF")
        }

    # THEN every tag is pure Python or manylinux on this machine, each wheel runs on cp312 ...
    assert len(wheels) >= 10, wheels
    for wheel, tags in wheels.items():
        parsed = [WHEEL_TAG.match(tag) for tag in tags]
        assert all(parsed), (wheel, tags)
        platforms = {match["platform"] for match in parsed if match}
        assert all(p == "any" or manylinux.match(p) for p in platforms), (wheel, tags)
        assert any(runs_on_cp312(match, manylinux) for match in parsed if match), (
            f"{wheel} has no tag for cp312 on {machine}: {tags}"
        )

    # ... and every shared object is for this machine's instruction set
    assert elf_machines, "no compiled extensions found; fastavro and wrapt ship them"
    wrong = {
        name: hex(value) for name, value in elf_machines.items() if value != ELF_MACHINES[arch]
    }
    assert not wrong, f"built for the wrong machine (want {hex(ELF_MACHINES[arch])}): {wrong}"


SCHEMAS = ROOT / "infrastructure" / "schemas"
RUNTIME_INFRASTRUCTURE = {
    "infrastructure/",
    "infrastructure/__init__.py",
    "infrastructure/environment.py",
    "infrastructure/payload_tables.py",
    "infrastructure/tunables.py",
    "infrastructure/tunables.json",
    "infrastructure/tunables.schema.json",
    "infrastructure/schemas/",
    *(
        f"infrastructure/schemas/{path.relative_to(SCHEMAS).as_posix()}"
        + ("/" if path.is_dir() else "")
        for path in SCHEMAS.rglob("*")
        if "__pycache__" not in path.parts
    ),
}
"""What of `infrastructure` the functions read at run time; nothing else of it is packaged."""


@pytest.mark.parametrize("arch", ARCHES)
def test_packages_fit_lambda_limits_and_carry_only_function_code(build: Build, arch: str) -> None:
    # GIVEN the packages for one architecture
    out = build(arch)

    for name in FUNCTIONS:
        # WHEN each function's zip is read
        path = out / f"{name}.zip"
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
        names = [info.filename for info in infos]

        # THEN it fits Lambda's direct-upload and unzipped limits
        assert path.stat().st_size <= MAX_ZIPPED_BYTES, (name, path.stat().st_size)
        assert sum(info.file_size for info in infos) <= MAX_UNZIPPED_BYTES, name

        # AND it holds the handler and the tunables (and their bytecode), but no local
        # stand-ins, CLI, Terraform or tests
        assert FUNCTIONS[name].rpartition(".")[0].replace(".", "/") + ".py" in names
        assert {
            n for n in names if n.startswith("infrastructure/") and "__pycache__/" not in n
        } == RUNTIME_INFRASTRUCTURE
        assert not [n for n in names if n.startswith(("tests/", "bin/"))]


CACHE_TAG = "cpython-" + PYTHON_VERSION.replace(".", "")
PYC_MAGIC = {"3.11": 3495, "3.12": 3531}
"""The first bytecode magic number of each version's final releases (importlib.util.MAGIC_NUMBER
of that version): what the runtime's interpreter checks before it uses a .pyc."""
UNCHECKED_HASH = 0b01
"""PEP 552 flags: bit 0 set, the .pyc carries a source hash instead of an mtime; bit 1 clear,
the interpreter does not check it against the source (CHECKED_HASH sets both)."""


def test_the_package_carries_unchecked_hash_bytecode_of_the_runtime_version(build: Build) -> None:
    # GIVEN a package (x86_64: the bytecode does not depend on the machine)
    with zipfile.ZipFile(build("x86_64") / "delivery.zip") as archive:
        infos = {info.filename: info for info in archive.infolist()}

        # WHEN its modules and bytecode files are read
        sources = [n for n in infos if n.endswith(".py")]
        compiled = [n for n in infos if n.endswith(".pyc")]
        headers = {n: archive.read(infos[n])[:16] for n in compiled}

    # THEN every module has exactly one .pyc where the runtime's interpreter looks for it ...
    expected = {
        f"{path.rpartition('/')[0]}/__pycache__/".lstrip("/")
        + f"{path.rpartition('/')[2][:-3]}.{CACHE_TAG}.pyc"
        for path in sources
    }
    assert len(sources) > 500, "botocore, boto3, Powertools and Sluice are in the package"
    assert set(compiled) == expected, sorted(set(compiled) ^ expected)[:10]

    # ... with that version's magic number and the unchecked-hash flags (no mtime in them)
    magic = PYC_MAGIC[PYTHON_VERSION].to_bytes(2, "little") + b"\r\n"
    assert {header[:4] for header in headers.values()} == {magic}
    assert {int.from_bytes(header[4:8], "little") for header in headers.values()} == {
        UNCHECKED_HASH
    }


def test_the_cold_start_bench_imports_every_handler_from_its_zip(
    build: Build, tmp_path: Path
) -> None:
    # GIVEN the packages for this machine, as the cold-start bench would build them
    packages = build(bench_functions.host_architecture())

    # WHEN the bench measures each handler's import from its unpacked zip (one run each)
    figure = bench_functions.measure_cold_start(bench_functions.TINY, "", tmp_path, packages)

    # THEN every function's handler module is in the figure (the times are the bench's business)
    modules = {handler.rpartition(".")[0] for handler in FUNCTIONS.values()}
    assert figure.name == "cold_start_ms_max"
    assert figure.value > 0
    assert all(f"{module} " in figure.reference for module in modules), figure.reference
    assert not list(tmp_path.glob("task-*")), "each unpacked zip is removed after its runs"
    assert "; interpreter: 3.12." in figure.reference, figure.reference
