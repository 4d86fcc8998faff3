"""The package's deferred imports: minio's admin API and its client's unused classes off every
cold start, each still working when first used."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import minio
import pytest

from infrastructure.deferred_imports import (
    CLIENT_CLASSES,
    PACKAGE_NAMES,
    Deferral,
    DeferralError,
    defer_unused_imports,
)

DEFERRED_MODULES = sorted(
    f"minio{d.module}" for d in (*PACKAGE_NAMES, *CLIENT_CLASSES) if d.module.startswith(".")
)

ADMIN_CHECK = """
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

CLIENT_CHECK = """
import json, sys
import minio
from minio import api
loaded_at_import = sorted(m for m in sys.modules if m.startswith("minio."))
client = minio.Minio("127.0.0.1:9", access_key="a", secret_key="b", secure=False)
try:  # the client checks its argument against the stand-in: a ValueError, not a request
    client.set_bucket_versioning("bucket", "not a config")
except ValueError as err:
    refused = str(err)
from minio.versioningconfig import VersioningConfig
checked = isinstance(VersioningConfig("Enabled"), api.VersioningConfig)
tags = api.unmarshal(api.Tagging, "<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag>"
                     "</TagSet></Tagging>")
made = type(api.LegalHold(True)).__module__
print(json.dumps({
    "loaded_at_import": loaded_at_import,
    "refused": refused,
    "checked": checked,
    "tags": dict(tags.tags),
    "made": made,
    "replaced": api.Tagging is sys.modules["minio.tagging"].Tagging,
    "still_stand_in": type(api.ReplicationConfig).__name__,
}))
"""


def installed_minio_copy(tree: Path) -> Path:
    """The installed minio package copied into `tree`, as the package build installs it."""
    shutil.copytree(Path(minio.__file__).parent, tree / "minio")
    return tree


def run_in(tree: Path, script: str) -> str:
    done = subprocess.run(  # noqa: S603  # this interpreter, a fixed script
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
        env={"PYTHONPATH": str(tree)},
    )
    return done.stdout


def test_minio_imports_without_its_admin_api_which_still_loads_on_first_use(
    tmp_path: Path,
) -> None:
    # GIVEN the installed minio in a package tree, its imports deferred
    tree = installed_minio_copy(tmp_path)
    defer_unused_imports(tree)

    # WHEN a fresh interpreter imports minio from that tree, then asks for MinioAdmin
    out = run_in(tree, ADMIN_CHECK)

    # THEN the import loaded neither the admin module nor pycryptodome nor argon2 ...
    where, loaded, client = out.splitlines()[0].split("|")
    assert where == str(tree / "minio" / "__init__.py")
    assert (loaded, client) == ("[]", "Minio")
    # ... MinioAdmin is the real class, imported when asked for, and other names still fail
    assert out.splitlines()[1:] == [
        "minio.minioadmin",
        "module 'minio' has no attribute 'NoSuchThing'",
    ]


def test_the_clients_unused_classes_load_on_first_call_read_or_isinstance(tmp_path: Path) -> None:
    # GIVEN the installed minio in a package tree, its imports deferred
    tree = installed_minio_copy(tmp_path)
    defer_unused_imports(tree)

    # WHEN a fresh interpreter imports minio, then uses some of the deferred classes
    seen = json.loads(run_in(tree, CLIENT_CHECK))

    # THEN importing minio loaded none of their modules ...
    assert not set(DEFERRED_MODULES) & set(seen["loaded_at_import"])
    assert "minio.api" in seen["loaded_at_import"]
    # ... the client's own isinstance check, XML parsing and construction work as before
    assert seen["refused"] == "config must be VersioningConfig type"
    assert seen["checked"] is True
    assert seen["tags"] == {"k": "v"}
    assert seen["made"] == "minio.legalhold"
    # ... and a class once used takes its stand-in's place; one never used stays deferred
    assert seen["replaced"] is True
    assert seen["still_stand_in"] == "_ImportedOnFirstUse"


def test_every_deferred_name_is_gone_from_the_import_and_made_lazy(tmp_path: Path) -> None:
    # GIVEN the installed minio, its imports deferred
    tree = installed_minio_copy(tmp_path)
    defer_unused_imports(tree)
    api = (tree / "minio" / "api.py").read_text()
    init = (tree / "minio" / "__init__.py").read_text()

    # THEN no deferred statement is left, and every name has its stand-in or __getattr__
    for deferral in CLIENT_CLASSES:
        assert deferral.statement not in api
        for name in deferral.names:
            assert f"{name} = _ImportedOnFirstUse({deferral.module!r}, {name!r})\n" in api
    for deferral in PACKAGE_NAMES:
        assert deferral.statement not in init
        assert f"if name == {deferral.names[0]!r}:" in init
    compile(api, "api.py", "exec")


@pytest.mark.parametrize(
    "deferral", [*PACKAGE_NAMES, *CLIENT_CLASSES], ids=lambda d: f"{d.file}:{d.names[0]}"
)
def test_a_minio_whose_deferred_import_moved_fails_the_build(
    tmp_path: Path, deferral: Deferral
) -> None:
    # GIVEN a minio release in which one deferred import is no longer written as expected
    source = installed_minio_copy(tmp_path) / deferral.file
    source.write_text(source.read_text().replace(deferral.statement, "# moved\n"))

    # WHEN the package build defers its imports, THEN it stops, naming the file and the line
    first_line = deferral.statement.splitlines()[0].strip()
    with pytest.raises(DeferralError, match=f"{deferral.file} does not hold") as raised:
        defer_unused_imports(tmp_path)
    assert repr(first_line) in str(raised.value)


def test_the_installers_cache_linked_into_the_tree_is_left_as_it_was(tmp_path: Path) -> None:
    # GIVEN a tree whose minio files are hard links to an installer's cache, as uv installs
    cache = installed_minio_copy(tmp_path / "cache")
    tree = tmp_path / "tree"
    shutil.copytree(cache / "minio", tree / "minio", copy_function=os.link)
    cached = {name: (cache / "minio" / name).read_bytes() for name in ("__init__.py", "api.py")}

    # WHEN the package build defers minio's imports in the tree
    defer_unused_imports(tree)

    # THEN the tree's copies changed and the cache's did not
    for name, before in cached.items():
        assert (tree / "minio" / name).read_bytes() != before
        assert (cache / "minio" / name).read_bytes() == before
