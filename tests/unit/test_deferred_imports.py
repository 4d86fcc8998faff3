"""The package's deferred imports: minio's admin API and its client's unused classes off every
cold start, each still working when first used."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infrastructure.deferred_imports import (
    ASYNCIO,
    CLIENT_CLASSES,
    DEFERRALS,
    PACKAGE_NAMES,
    URLLIB3_HTTP2,
    WRAPT_IMPORTER,
    Deferral,
    DeferralError,
    defer_unused_imports,
)

EVENTS = Path(__file__).parent.parent / "events"
DEFERRED_MODULES = sorted(f"minio{d.module}" for d in (*PACKAGE_NAMES, *CLIENT_CLASSES))

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


REWRITTEN_PACKAGES = sorted({deferral.file.parts[0] for deferral in DEFERRALS})


def installed_copy(tree: Path, *, link: bool = True) -> Path:
    """The installed packages the build rewrites, in `tree`: hard links to the installed files,
    as uv installs them (the rewrite replaces a file, never writes into it: see the last test),
    or with `link=False` copies of their own."""
    for name in REWRITTEN_PACKAGES:
        package = importlib.import_module(name)
        shutil.copytree(
            Path(str(package.__file__)).parent,
            tree / name,
            copy_function=os.link if link else shutil.copy2,
        )
    return tree


@pytest.fixture(scope="module")
def rewritten(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tree of the installed packages with every deferral applied, for the tests that
    only run it."""
    tree = installed_copy(tmp_path_factory.mktemp("rewritten"))
    defer_unused_imports(tree)
    return tree


def run_in(tree: Path, script: str, *args: str) -> str:
    done = subprocess.run(  # noqa: S603  # this interpreter, a fixed script
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
        env={"PYTHONPATH": str(tree)},
    )
    return done.stdout


def test_minio_imports_without_its_admin_api_which_still_loads_on_first_use(
    rewritten: Path,
) -> None:
    # GIVEN the installed minio in a package tree, its imports deferred
    tree = rewritten

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


def test_the_clients_unused_classes_load_on_first_call_read_or_isinstance(rewritten: Path) -> None:
    # GIVEN the installed minio in a package tree, its imports deferred
    tree = rewritten

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


def test_every_deferred_import_is_gone_and_each_name_made_lazy(rewritten: Path) -> None:
    # GIVEN the installed packages, their imports deferred
    for deferral in DEFERRALS:
        source = (rewritten / deferral.file).read_text()

        # THEN the statement is gone, and each name has its stand-in or its package __getattr__
        assert deferral.statement not in source
        if deferral.how == "package_getattr":
            assert f"if name == {deferral.names[0]!r}:" in source
        for name in deferral.names if deferral.how == "stand_in" else ():
            assert f"{name} = _ImportedOnFirstUse({deferral.module!r}, {name!r})\n" in source
        if not deferral.names:
            bound = deferral.module.partition(".")[0]
            assert f"{bound} = _ImportedOnFirstUse({deferral.module!r}, None)\n" in source
        compile(source, str(deferral.file), "exec")


@pytest.mark.parametrize("deferral", DEFERRALS, ids=lambda d: f"{d.file}:{d.module}")
def test_a_release_whose_deferred_import_moved_fails_the_build(
    tmp_path: Path, deferral: Deferral
) -> None:
    # GIVEN a release in which one deferred import is no longer written as expected
    source = installed_copy(tmp_path) / deferral.file
    text = source.read_text()
    source.unlink()  # a copy of its own, not the installed file it links to
    source.write_text(text.replace(deferral.statement, "# moved\n"))

    # WHEN the package build defers its imports, THEN it stops, naming the file and the line
    first_line = deferral.statement.splitlines()[0].strip()
    with pytest.raises(DeferralError, match=f"{deferral.file} does not hold") as raised:
        defer_unused_imports(tmp_path)
    assert repr(first_line) in str(raised.value)


HTTP2_CHECK = """
import json, sys
import urllib3
import wrapt
from urllib3 import http2
loaded_at_import = "importlib.metadata" in sys.modules
try:
    http2.inject_into_urllib3()  # reads h2's version first: h2 is not installed here
except Exception as err:
    failed = type(err).__name__
print(json.dumps({"loaded_at_import": loaded_at_import, "failed": failed,
                  "version": http2.version.__module__}))
"""


def test_urllib3_imports_without_importlib_metadata_until_http2_asks_for_a_version(
    rewritten: Path,
) -> None:
    # GIVEN the installed urllib3 in a package tree, its imports deferred
    tree = rewritten

    # WHEN a fresh interpreter imports urllib3, then switches HTTP/2 on (h2 is not installed)
    seen = json.loads(run_in(tree, HTTP2_CHECK))

    # THEN importlib.metadata waited for that call, which then asked it for h2's version
    assert seen == {
        "loaded_at_import": False,
        "failed": "PackageNotFoundError",
        "version": "importlib.metadata",
    }
    assert URLLIB3_HTTP2[0].statement not in (tree / URLLIB3_HTTP2[0].file).read_text()


WRAPT_CHECK = """
import json, sys
import urllib3, wrapt
from wrapt import importer
loaded_at_import = "importlib.metadata" in sys.modules
importer.discover_post_import_hooks("sluice.no-such-group")  # reads entry points
print(json.dumps({"loaded_at_import": loaded_at_import,
                  "loaded_after": "importlib.metadata" in sys.modules,
                  "replaced": importer.importlib is sys.modules["importlib"]}))
"""


def test_wrapt_and_urllib3_import_without_importlib_metadata_until_hooks_are_discovered(
    rewritten: Path,
) -> None:
    # GIVEN wrapt and urllib3 in a package tree, their imports deferred
    tree = rewritten

    # WHEN a fresh interpreter imports both, then asks wrapt to discover post-import hooks
    seen = json.loads(run_in(tree, WRAPT_CHECK))

    # THEN importlib.metadata waited for that call, and the module's name is the real package
    assert seen == {"loaded_at_import": False, "loaded_after": True, "replaced": True}
    assert WRAPT_IMPORTER[0].statement not in (tree / WRAPT_IMPORTER[0].file).read_text()


ASYNC_CHECK = """
import json, sys
import wrapt
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor, EventType, async_process_partial_response)
loaded_at_import = "asyncio" in sys.modules

@wrapt.synchronized
async def double(body):  # wrapt's lock for a coroutine is an asyncio.Lock
    return body * 2

async def handle(record):
    assert await double(record.body) == record.body * 2

event = json.load(open(sys.argv[1]))
response = async_process_partial_response(
    event=event, record_handler=handle, processor=AsyncBatchProcessor(EventType.SQS), context=None)
print(json.dumps({"loaded_at_import": loaded_at_import, "response": response,
                  "records": len(event["Records"])}))
"""


def test_asyncio_waits_for_the_first_coroutine_and_then_works_as_before(rewritten: Path) -> None:
    # GIVEN wrapt and Powertools in a package tree, their imports deferred
    tree = rewritten

    # WHEN a fresh interpreter imports both, then runs a real SQS event through Powertools'
    # async batch processor, each record through a coroutine wrapt synchronizes
    seen = json.loads(run_in(tree, ASYNC_CHECK, str(EVENTS / "sqs_event.json")))

    # THEN asyncio was not imported until then, and every record was processed
    assert seen["loaded_at_import"] is False
    assert seen["records"] > 0
    assert seen["response"] == {"batchItemFailures": []}
    for deferral in ASYNCIO:
        assert deferral.statement not in (tree / deferral.file).read_text()


DOCS_CHECK = """
import inspect, json, sys
import boto3
client = boto3.client("s3", region_name="eu-west-2", aws_access_key_id="a",
                      aws_secret_access_key="b")
resource = boto3.resource("s3", region_name="eu-west-2", aws_access_key_id="a",
                          aws_secret_access_key="b")
writers = ("botocore.docs.service", "botocore.docs.method", "boto3.docs.service",
           "boto3.docs.action", "html.parser")
loaded_before = sorted(m for m in writers if m in sys.modules)
client_doc = inspect.getdoc(client.put_object)  # as help() reads it
resource_doc = inspect.getdoc(resource.Bucket("b").create)
print(json.dumps({"loaded_before": loaded_before,
                  "loaded_after": sorted(m for m in writers if m in sys.modules),
                  "client_doc": client_doc, "resource_doc": resource_doc}))
"""


def test_boto3_clients_and_resources_are_made_without_the_docs_writer_until_a_doc_is_read(
    rewritten: Path,
) -> None:
    # GIVEN boto3 and botocore in a package tree, their imports deferred
    # WHEN a fresh interpreter makes an S3 client and resource, then reads a docstring of each
    seen = json.loads(run_in(rewritten, DOCS_CHECK))

    # THEN the documentation writer was not imported until a docstring was read, and then
    # each docstring is written as before
    assert seen["loaded_before"] == []
    assert "botocore.docs.method" in seen["loaded_after"]
    assert "boto3.docs.action" in seen["loaded_after"]
    assert "**Request Syntax**" in seen["client_doc"]
    assert "client.put_object(" in seen["client_doc"]
    assert "**Request Syntax**" in seen["resource_doc"]


PROCESS_POOL_CHECK = """
import json, sys
import boto3
boto3.client("s3", region_name="eu-west-2", aws_access_key_id="a", aws_secret_access_key="b")
loaded_at_import = "multiprocessing.managers" in sys.modules
from s3transfer import compat, processpool  # subclasses BaseManager at import
from multiprocessing.managers import BaseManager
print(json.dumps({"loaded_at_import": loaded_at_import,
                  "subclass": issubclass(processpool.TransferMonitorManager, BaseManager),
                  "replaced": compat.BaseManager is BaseManager}))
"""


def test_s3transfer_imports_without_multiprocessing_until_its_process_pool_subclasses_it(
    rewritten: Path,
) -> None:
    # GIVEN s3transfer in a package tree, its imports deferred
    # WHEN a fresh interpreter imports boto3 and makes an S3 client (which loads s3transfer),
    # then imports the process-pool downloader, whose manager subclasses BaseManager
    seen = json.loads(run_in(rewritten, PROCESS_POOL_CHECK))

    # THEN multiprocessing waited for that, and the subclass is of the real class
    assert seen == {"loaded_at_import": False, "subclass": True, "replaced": True}


def test_the_installers_cache_linked_into_the_tree_is_left_as_it_was(tmp_path: Path) -> None:
    # GIVEN a tree whose files are hard links to an installer's cache, as uv installs
    cache = installed_copy(tmp_path / "cache", link=False)
    tree = tmp_path / "tree"
    for package in REWRITTEN_PACKAGES:
        shutil.copytree(cache / package, tree / package, copy_function=os.link)
    files = sorted({deferral.file for deferral in DEFERRALS})
    cached = {file: (cache / file).read_bytes() for file in files}

    # WHEN the package build defers the imports in the tree
    defer_unused_imports(tree)

    # THEN the tree's copies changed and the cache's did not
    for file, before in cached.items():
        assert (tree / file).read_bytes() != before
        assert (cache / file).read_bytes() == before
