"""Imports of the dependencies that no function uses, made lazy in the Lambda package.

The package build (infrastructure/packaging.py) rewrites these lines of the installed minio,
urllib3, wrapt, Powertools, boto3 and botocore, so that a cold start no longer pays for them;
every name still works, imported on first use. Each line must be found exactly as written: a
release that moves one fails the build, to be looked at, rather than quietly paying the import
again. docs/BENCHMARKS.md has the figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal, NamedTuple


class DeferralError(RuntimeError):
    """The installed dependency no longer holds a line this module rewrites."""


class Deferral(NamedTuple):
    """In `file`, the import `statement` of `names` from `module` (no names: `import <module>`,
    which binds its top-level package), made lazy: through the package's `__getattr__` (names
    other modules read) or a stand-in (names the file's own code uses)."""

    file: Path
    statement: str
    module: str
    names: tuple[str, ...]
    how: Literal["package_getattr", "stand_in"]


MINIO_INIT: Final = Path("minio") / "__init__.py"
MINIO_API: Final = Path("minio") / "api.py"

PACKAGE_NAMES: Final = (
    Deferral(
        MINIO_INIT,
        "from .minioadmin import MinioAdmin as MinioAdmin\n",
        ".minioadmin",
        ("MinioAdmin",),
        "package_getattr",
    ),
)
"""Names a package exports and no function reads, made a PEP 562 module `__getattr__`: minio's
admin API pulls pycryptodome and argon2 into `import minio`. `minio.MinioAdmin` still works."""


def _stand_ins(file: Path, *imports: tuple[str, str, tuple[str, ...]]) -> tuple[Deferral, ...]:
    """Stand-ins for the names of each (statement, module, names) import in `file`."""
    return tuple(Deferral(file, *line, "stand_in") for line in imports)


CLIENT_CLASSES: Final = _stand_ins(
    MINIO_API,
    (
        "from .deleteobjects import (DeleteError, DeleteObject, DeleteRequest,\n"
        "                            DeleteResult)\n",
        ".deleteobjects",
        ("DeleteError", "DeleteObject", "DeleteRequest", "DeleteResult"),
    ),
    ("from .legalhold import LegalHold\n", ".legalhold", ("LegalHold",)),
    ("from .lifecycleconfig import LifecycleConfig\n", ".lifecycleconfig", ("LifecycleConfig",)),
    (
        "from .notificationconfig import NotificationConfig\n",
        ".notificationconfig",
        ("NotificationConfig",),
    ),
    (
        "from .objectlockconfig import ObjectLockConfig\n",
        ".objectlockconfig",
        ("ObjectLockConfig",),
    ),
    (
        "from .replicationconfig import ReplicationConfig\n",
        ".replicationconfig",
        ("ReplicationConfig",),
    ),
    ("from .retention import Retention\n", ".retention", ("Retention",)),
    (
        "from .select import SelectObjectReader, SelectRequest\n",
        ".select",
        ("SelectObjectReader", "SelectRequest"),
    ),
    ("from .sseconfig import SSEConfig\n", ".sseconfig", ("SSEConfig",)),
    ("from .tagging import Tagging\n", ".tagging", ("Tagging",)),
    (
        "from .versioningconfig import VersioningConfig\n",
        ".versioningconfig",
        ("VersioningConfig",),
    ),
)
"""Classes of the client's bucket-configuration, object-lock, select and bulk-delete APIs, which
no function calls: their modules define 52 of minio's 73 dataclasses, and a dataclass costs
~0.6 ms to create on python3.12. Each name in minio/api.py becomes a stand-in
(`_ImportedOnFirstUse`) that imports the class when first called, read or checked with
`isinstance`, then puts the class in its place."""

URLLIB3_HTTP2: Final = _stand_ins(
    Path("urllib3") / "http2" / "__init__.py",
    ("from importlib.metadata import version\n", "importlib.metadata", ("version",)),
)
"""urllib3 imports its HTTP/2 module with its connections, and that module imports
`importlib.metadata` (and with it zipfile and csv) at the top, to read h2's version when HTTP/2
is switched on, which nothing in Sluice does."""

WRAPT_IMPORTER: Final = _stand_ins(
    Path("wrapt") / "importer.py", ("import importlib.metadata\n", "importlib.metadata", ())
)
"""wrapt (the X-Ray SDK's, so every function's) imports `importlib.metadata` at the top of its
post-import hooks module, to read entry points when asked to discover hooks, which nothing
does here. Both this and URLLIB3_HTTP2 must go for the import to leave the cold start."""

ASYNCIO: Final = (
    *_stand_ins(Path("wrapt") / "synchronization.py", ("import asyncio\n", "asyncio", ())),
    *_stand_ins(
        Path("aws_lambda_powertools") / "utilities" / "batch" / "base.py",
        ("import asyncio\n", "asyncio", ()),
    ),
)
"""asyncio (~10 ms): wrapt's `synchronized` decorator and Powertools' async batch processor
import it at the top for their coroutine paths; Sluice's handlers are synchronous."""

BOTOCORE_DOCS: Final = (
    *_stand_ins(
        Path("botocore") / "docs" / "__init__.py",
        (
            "from botocore.docs.service import ServiceDocumenter\n",
            "botocore.docs.service",
            ("ServiceDocumenter",),
        ),
    ),
    *_stand_ins(
        Path("botocore") / "docs" / "docstring.py",
        (
            "from botocore.docs.bcdoc.restdoc import DocumentStructure\n",
            "botocore.docs.bcdoc.restdoc",
            ("DocumentStructure",),
        ),
        (
            "from botocore.docs.method import document_model_driven_method\n",
            "botocore.docs.method",
            ("document_model_driven_method",),
        ),
        (
            "from botocore.docs.paginator import document_paginate_method\n",
            "botocore.docs.paginator",
            ("document_paginate_method",),
        ),
        (
            "from botocore.docs.waiter import document_wait_method\n",
            "botocore.docs.waiter",
            ("document_wait_method",),
        ),
    ),
)
"""botocore's API documentation writer (its service, method and shape documenters, an HTML
parser among them): every client method gets a docstring that renders itself when read, and the
writer is imported at `import botocore.client` although only a read of `__doc__` runs it."""

BOTO3_DOCS: Final = (
    *_stand_ins(
        Path("boto3") / "docs" / "__init__.py",
        (
            "from boto3.docs.service import ServiceDocumenter\n",
            "boto3.docs.service",
            ("ServiceDocumenter",),
        ),
    ),
    *_stand_ins(
        Path("boto3") / "docs" / "docstring.py",
        (
            "from boto3.docs.action import document_action, document_load_reload_action\n",
            "boto3.docs.action",
            ("document_action", "document_load_reload_action"),
        ),
        (
            "from boto3.docs.attr import (\n"
            "    document_attribute,\n"
            "    document_identifier,\n"
            "    document_reference,\n"
            ")\n",
            "boto3.docs.attr",
            ("document_attribute", "document_identifier", "document_reference"),
        ),
        (
            "from boto3.docs.collection import (\n"
            "    document_batch_action,\n"
            "    document_collection_method,\n"
            "    document_collection_object,\n"
            ")\n",
            "boto3.docs.collection",
            ("document_batch_action", "document_collection_method", "document_collection_object"),
        ),
        (
            "from boto3.docs.subresource import document_sub_resource\n",
            "boto3.docs.subresource",
            ("document_sub_resource",),
        ),
        (
            "from boto3.docs.waiter import document_resource_waiter\n",
            "boto3.docs.waiter",
            ("document_resource_waiter",),
        ),
    ),
)
"""The same for boto3's resource documentation: `import boto3` imports its resource factory,
which imports the writer for resource docstrings that, again, render only when read."""

S3TRANSFER_PROCESS_POOL: Final = _stand_ins(
    Path("s3transfer") / "compat.py",
    (
        "from multiprocessing.managers import BaseManager  # noqa: F401,E402\n",
        "multiprocessing.managers",
        ("BaseManager",),
    ),
)
"""s3transfer re-exports multiprocessing's `BaseManager` (and so imports most of multiprocessing)
for its process-pool downloader, which boto3 never uses; `import boto3` imports s3transfer.
The stand-in can be subclassed (`__mro_entries__`), as that downloader's module does."""

DEFERRALS: Final = (
    *PACKAGE_NAMES,
    *CLIENT_CLASSES,
    *URLLIB3_HTTP2,
    *WRAPT_IMPORTER,
    *ASYNCIO,
    *BOTOCORE_DOCS,
    *BOTO3_DOCS,
    *S3TRANSFER_PROCESS_POOL,
)

_MODULE_GETATTR: Final = """
def __getattr__(name):  # added by Sluice's packaging (infrastructure/deferred_imports.py)
    if name == {name!r}:
        from {module} import {name}

        return {name}
    raise AttributeError(f"module {{__name__!r}} has no attribute {{name!r}}")
"""

_STAND_IN: Final = '''
class _ImportedOnFirstUse:  # added by Sluice's packaging (infrastructure/deferred_imports.py)
    """`name` of `module` (None: `import module`), imported when first called, read, checked
    with isinstance or subclassed."""

    def __init__(self, module, name):
        self._module = module
        self._name = name

    def _load(self):
        import importlib
        import sys

        module = importlib.import_module(self._module, __package__)
        if self._name is None:  # `import a.b` binds `a`
            bound = self._module.partition(".")[0]
            found = sys.modules[bound]
        else:
            bound, found = self._name, getattr(module, self._name)
        globals()[bound] = found  # from now on the module's own name is the real thing
        return found

    def __call__(self, *args, **kwargs):
        return self._load()(*args, **kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._load(), name)

    def __instancecheck__(self, instance):
        return isinstance(instance, self._load())

    def __mro_entries__(self, bases):  # a class statement naming it as a base gets the class
        return (self._load(),)

    def __repr__(self):
        return f"<{self._name or 'module'} {self._module}, imported on first use>"

'''


def defer_unused_imports(tree: Path) -> list[Path]:
    """Rewrite every deferral in the installed `tree`; returns the files rewritten."""
    by_file: dict[Path, list[Deferral]] = {}
    for deferral in DEFERRALS:
        by_file.setdefault(deferral.file, []).append(deferral)
    for relative, deferrals in by_file.items():
        path = tree / relative
        source = path.read_text(encoding="utf-8") if path.is_file() else ""
        for deferral in deferrals:
            if source.count(deferral.statement) != 1:
                first_line = deferral.statement.splitlines()[0].strip()
                raise DeferralError(
                    f"{relative} does not hold {first_line!r} once; the dependency changed: "
                    "review infrastructure/deferred_imports.py"
                )
        # A new file, not a write in place: the installer hard-links the tree to its cache.
        rewritten = path.with_name(f".{path.name}.deferred")
        rewritten.write_text(_rewrite(source, deferrals), encoding="utf-8")
        rewritten.replace(path)
    return list(by_file)


def _rewrite(source: str, deferrals: list[Deferral]) -> str:
    getattrs = ""
    for deferral in deferrals:
        if deferral.how == "stand_in":
            stand_ins = "".join(
                f"{name} = _ImportedOnFirstUse({deferral.module!r}, {name!r})\n"
                for name in deferral.names
            ) or (
                f"{deferral.module.partition('.')[0]} = "
                f"_ImportedOnFirstUse({deferral.module!r}, None)\n"
            )
            source = source.replace(deferral.statement, stand_ins)
        else:
            (name,) = deferral.names
            source = source.replace(deferral.statement, "")
            getattrs += _MODULE_GETATTR.format(module=deferral.module, name=name)
    if "_ImportedOnFirstUse(" in source:
        # The class goes where the first stand-in is made, among the module's own imports.
        first = source.index("_ImportedOnFirstUse(")
        line_start = source.rindex("\n", 0, first) + 1
        source = source[:line_start] + _STAND_IN.lstrip("\n") + source[line_start:]
    return source + getattrs
