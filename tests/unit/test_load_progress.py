"""`sluice load`'s progress (infrastructure.cli.files.Progress): the forwarder's records read from
moto in process, MinIO's window manifests from a stand-in reader."""

from __future__ import annotations

from typing import Any

from infrastructure.cli.arrivals import Arrival
from infrastructure.cli.deployment import Deployment
from infrastructure.cli.files import LoadReport, Progress


class Windows:
    """A ManifestReader whose windows arrive when the test says."""

    def __init__(self) -> None:
        self.committed: list[Arrival] = []

    def new_arrivals(self) -> list[Arrival]:
        arrived, self.committed = self.committed, []
        return arrived


def arrival(key: str, sha256: str) -> Arrival:
    return Arrival(key, "v", sha256, 1, "window-1", "sluice/window-1.tar.gz")


def forwarded(target: Deployment, *file_ids: str) -> None:
    for file_id in file_ids:
        target.client("dynamodb").put_item(
            TableName=target.idempotency_table,
            Item={"id": {"S": file_id}, "status": {"S": "COMPLETED"}},
        )


def test_progress_advances_as_files_are_forwarded_not_only_as_windows_arrive(
    provisioned: Deployment,
) -> None:
    target = provisioned
    # GIVEN four files landed by `load`, an in-progress one among them
    report = LoadReport()
    files = [(f"load/run/{n}.json", f"sha{n}") for n in range(4)]
    for n, file in enumerate(files):
        report.sent[file] = "json"
        report.file_ids[file] = f"f{n}"
    target.client("dynamodb").put_item(
        TableName=target.idempotency_table,
        Item={"id": {"S": "f3"}, "status": {"S": "IN_PROGRESS"}},
    )
    windows = Windows()
    lines: list[str] = []
    progress = Progress(
        report,
        reader=windows,  # type: ignore[arg-type]  # a stand-in
        dynamodb=target.client("dynamodb"),
        idempotency_table=target.idempotency_table,
        out=lines.append,
    )
    seen: list[Any] = []

    def look() -> None:
        progress.show()
        seen.append(progress.last)

    # WHEN the forwarder completes files one poll after another, and a window arrives in MinIO
    look()
    forwarded(target, "f0")
    look()
    forwarded(target, "f1", "f2")
    look()
    look()
    windows.committed = [arrival(*files[0]), arrival(*files[1]), arrival("other/run.json", "x")]
    look()
    # THEN each forwarded file moves the progress on before any window arrives, a line is printed
    # only when a figure moved, and only this run's files count as arrived
    assert seen == [(4, 0, 0), (4, 1, 0), (4, 3, 0), (4, 3, 0), (4, 3, 2)]
    assert lines == [
        "  4 sent, 0 forwarded, 0 in MinIO",
        "  4 sent, 1 forwarded, 0 in MinIO",
        "  4 sent, 3 forwarded, 0 in MinIO",
        "  4 sent, 3 forwarded, 2 in MinIO",
    ]
    assert report.windows == {"window-1"}
