"""The package's deferred imports: minio's admin API (and its crypto) off every cold start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import minio
import pytest

from infrastructure.packaging import PackagingError, defer_unused_imports

CHECK = """
import sys
import minio
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"Crypto", "argon2"}
                or m == "minio.minioadmin")
print(minio.__file__, loaded, minio.Minio.__name__, sep="|")
print(minio.MinioAdmin.__module__)
try:
    minio.NoSuchThing
except AttributeError as err:
    print(err)
"""


def installed_minio_copy(tree: Path) -> Path:
    """The installed minio package copied into `tree`, as the package build installs it."""
    shutil.copytree(Path(minio.__file__).parent, tree / "minio")
    return tree


def test_minio_imports_without_its_admin_api_which_still_loads_on_first_use(
    tmp_path: Path,
) -> None:
    # GIVEN the installed minio in a package tree, its admin import deferred
    tree = installed_minio_copy(tmp_path)
    defer_unused_imports(tree)

    # WHEN a fresh interpreter imports minio from that tree, then asks for MinioAdmin
    done = subprocess.run(  # noqa: S603  # this interpreter, a fixed script
        [sys.executable, "-c", CHECK],
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
        env={"PYTHONPATH": str(tree)},
    )

    # THEN the import loaded neither the admin module nor pycryptodome nor argon2 ...
    where, loaded, client = done.stdout.splitlines()[0].split("|")
    assert where == str(tree / "minio" / "__init__.py")
    assert (loaded, client) == ("[]", "Minio")
    # ... MinioAdmin is the real class, imported when asked for, and other names still fail
    assert done.stdout.splitlines()[1:] == [
        "minio.minioadmin",
        "module 'minio' has no attribute 'NoSuchThing'",
    ]


def test_a_minio_whose_admin_import_moved_fails_the_build(tmp_path: Path) -> None:
    # GIVEN a minio release whose __init__ no longer holds the line as written
    init = installed_minio_copy(tmp_path) / "minio" / "__init__.py"
    init.write_text(init.read_text().replace("as MinioAdmin", "as MinioAdmin  # moved"))

    # WHEN the package build defers its imports, THEN it stops, naming the file and the line
    moved = r"minio/__init__\.py does not hold 'from \.minioadmin"
    with pytest.raises(PackagingError, match=moved):
        defer_unused_imports(tmp_path)


def test_the_installers_cache_linked_into_the_tree_is_left_as_it_was(tmp_path: Path) -> None:
    # GIVEN a tree whose minio files are hard links to an installer's cache, as uv installs
    cache = installed_minio_copy(tmp_path / "cache")
    tree = tmp_path / "tree"
    shutil.copytree(cache / "minio", tree / "minio", copy_function=os.link)
    cached = (cache / "minio" / "__init__.py").read_bytes()

    # WHEN the package build defers minio's admin import in the tree
    defer_unused_imports(tree)

    # THEN the tree's copy changed and the cache's did not
    assert (tree / "minio" / "__init__.py").read_bytes() != cached
    assert (cache / "minio" / "__init__.py").read_bytes() == cached
