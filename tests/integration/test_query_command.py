"""`sluice query` (infrastructure/cli/query.py) against moto in process.

Locally: the staging bucket holds windows and payload table rows written here, as delivery and
Firehose lay them out; the command mirrors them and DuckDB runs the named queries, whose results
are compared with what was written.

With --env: moto's Athena does not run SQL. It records what it was asked and answers with the
results queued in its backend, so these tests assert the request (workgroup, database, query
string, execution parameters) and how the answer is printed, not the query's result.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import boto3
import pytest
from botocore.stub import Stubber
from moto.athena.models import QueryResults, athena_backends
from moto.core import DEFAULT_ACCOUNT_ID

from infrastructure import environment
from infrastructure.cli import main
from infrastructure.cli.deployment import Deployment
from infrastructure.payload_tables import timestamp_text
from infrastructure.query import queries
from infrastructure.query.athena import AthenaQueryError, AthenaTarget, run_athena
from tests.conftest import REGION

TODAY: Final = datetime.now(UTC).date()
PROD: Final = AthenaTarget("prod", REGION, "sluice-prod", "sluice_prod")


@pytest.fixture
def stack(provisioned: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    """The provisioned deployment as the local stack's commands find it, rooted in tmp_path."""
    monkeypatch.setenv(environment.ROOT, str(tmp_path))
    monkeypatch.setattr("infrastructure.cli.deployment.resolve", lambda args, root: provisioned)
    return provisioned


def put(target: Deployment, key: str, lines: list[dict[str, Any]]) -> None:
    body = gzip.compress("".join(json.dumps(line) + "\n" for line in lines).encode())
    target.client("s3").put_object(Bucket=target.staging_bucket, Key=key, Body=body)


def envelope(file_id: str, key: str, hour: int) -> dict[str, Any]:
    landed = int(datetime(TODAY.year, TODAY.month, TODAY.day, hour, 1, tzinfo=UTC).timestamp())
    return {
        "schema_version": 1,
        "file_id": file_id,
        "bucket": "unit-landing",
        "key": key,
        "version_id": f"v-{file_id}",
        "size": 2,
        "event_time_ms": landed * 1000,
        "forwarded_at_ms": landed * 1000 + 10,
        "body_encoding": "utf8",
        "body": "{}",
        "firehose_arrival_ms": landed * 1000 + 20,
    }


def order_row(
    order_id: str, number: int, file_id: str, *, error: str | None = None
) -> dict[str, Any]:
    valid = error is None
    return {
        "order_id": order_id if valid else None,
        "amount_pence": 100 * number if valid else None,
        "currency": "EUR" if valid else None,
        "note": None,
        "file_id": file_id,
        "key": f"orders/{file_id}.ndjson",
        "version_id": "v1",
        "record_number": number,
        "event_time": timestamp_text(datetime.now(UTC).timestamp()),
        "window_id": "w-1",
        "valid": valid,
        "error": error,
    }


def buffers(hour: int, window: str) -> str:
    return f"buffers/dt={TODAY.isoformat()}/hour={hour:02d}/{window}.json.gz"


def orders(day: date, hour: int, window: str) -> str:
    return f"tables/orders/dt={day.isoformat()}/hour={hour:02d}/{window}-0001.json.gz"


def sluice(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_files_per_hour_and_a_per_type_query_print_what_was_staged(
    stack: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN windows in two hours (one file staged twice) and order rows of two files
    put(stack, buffers(7, "w-1"), [envelope("f1", "orders/f1.ndjson", 7), envelope("f2", "a", 7)])
    put(stack, buffers(8, "w-2"), [envelope("f3", "b", 8), envelope("f1", "orders/f1.ndjson", 7)])
    put(stack, orders(TODAY, 7, "w-1"), [order_row("O-1", 1, "f1"), order_row("O-2", 2, "f1")])
    put(stack, orders(TODAY, 8, "w-2"), [order_row("", 1, "f9", error="line 1: not JSON")])
    # WHEN files_per_hour runs, as JSON
    status, out, err = sluice(capsys, "query", "files_per_hour", "--json")
    # THEN it counts the files staged in each hour, as they were written
    assert status == 0, err
    day = TODAY.isoformat()
    assert json.loads(out) == [
        {"dt": day, "hour": "07", "files": 2, "duplicate_records": 0, "windows": 1},
        {"dt": day, "hour": "08", "files": 2, "duplicate_records": 0, "windows": 1},
    ]
    assert "fetching 2 object(s)" in err
    # ... and the orders table's rows per hour print as a table
    status, out, err = sluice(capsys, "query", "orders_rows_per_hour")
    assert status == 0, err
    assert out.splitlines() == [
        "dt          hour  rows  valid_rows  invalid_rows  files",
        "----------  ----  ----  ----------  ------------  -----",
        f"{day}  07       2           2             0      1",
        f"{day}  08       1           0             1      1",
        "2 rows",
    ]
    # ... and the file Firehose staged twice is found
    status, out, _ = sluice(capsys, "query", "duplicate_records", "--csv")
    assert out.splitlines() == ["file_id,copies,windows,first_dt,last_dt", f"f1,2,2,{day},{day}"]


def test_trace_file_takes_its_parameters_in_order_or_by_name(
    stack: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a file staged in a window
    put(stack, buffers(9, "w-9"), [envelope("f1", "orders/it's.ndjson", 9)])
    day = TODAY.isoformat()
    # WHEN it is traced with values in order, and by name
    by_position = sluice(capsys, "query", "trace_file", "orders/it's.ndjson", day, "--json")
    by_name = sluice(
        capsys, "query", "trace_file", "--param", f"since={day}", "--param",
        "key=orders/it's.ndjson", "--json",
    )  # fmt: skip
    # THEN both find its window and staged object
    assert by_position[0] == by_name[0] == 0
    assert by_position[1] == by_name[1]
    (found,) = json.loads(by_position[1])
    assert found["window_id"] == "w-9"
    assert found["staged_object"] == f"s3://{stack.staging_bucket}/{buffers(9, 'w-9')}"
    assert found["event_time"] == f"{day} 09:01:00.000 UTC"


def test_the_mirror_fetches_only_new_objects_and_forgets_removed_ones(
    stack: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # GIVEN a window, mirrored by a first query
    s3 = stack.client("s3")
    put(stack, buffers(10, "w-a"), [envelope("f1", "a", 10)])
    assert sluice(capsys, "query", "--sql", "SELECT count(*) AS n FROM buffers")[1].startswith("n")
    # WHEN the same query runs again, THEN nothing is fetched
    status, out, err = sluice(capsys, "query", "--sql", "SELECT count(*) AS n FROM buffers")
    assert (status, err) == (0, "")
    # WHEN the window is gone and another is staged
    s3.delete_object(Bucket=stack.staging_bucket, Key=buffers(10, "w-a"))
    put(stack, buffers(11, "w-b"), [envelope("f2", "b", 11), envelope("f3", "c", 11)])
    status, out, err = sluice(
        capsys, "query", "--sql", "SELECT file_id FROM buffers WHERE dt = ? ORDER BY 1",
        TODAY.isoformat(), "--json",
    )  # fmt: skip
    # THEN only the new one is fetched, and the old one's copy is gone
    assert status == 0
    assert "fetching 1 object(s)" in err
    assert json.loads(out) == [{"file_id": "f2"}, {"file_id": "f3"}]
    copies = [p.name for p in (tmp_path / ".sluice").rglob("*.json.gz")]
    assert copies == ["w-b.json.gz"]


def test_an_empty_table_and_the_list_of_queries(
    stack: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN a per-type query runs before any row is written
    status, out, _ = sluice(capsys, "query", "customer_profiles_rows_per_hour")
    # THEN it prints its header and no rows
    assert status == 0
    assert out.splitlines()[0].split() == [
        "dt",
        "hour",
        "rows",
        "valid_rows",
        "invalid_rows",
        "files",
    ]
    assert out.splitlines()[-1] == "0 rows"
    # WHEN the named queries are listed
    status, out, _ = sluice(capsys, "query", "--list")
    listed = json.loads(sluice(capsys, "query", "--list", "--json")[1])
    # THEN every one is there with its description and parameters
    assert status == 0
    assert "trace_file KEY SINCE" in out.splitlines()
    names = {q["name"] for q in listed}
    assert {"files_per_hour", "orders_rows_per_hour", "meter_readings_invalid_rows"} <= names
    trace = next(q for q in listed if q["name"] == "trace_file")
    assert [p["name"] for p in trace["parameters"]] == ["key", "since"]


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["nonesuch"], 2, "no named query 'nonesuch'"),
        (["trace_file", "k"], 2, "trace_file needs parameter since (first dt to look in"),
        (["files_per_hour", "--param", "since=x"], 2, "files_per_hour has no parameter since"),
        ([], 2, "name a query (`sluice query --list` lists them) or give --sql"),
        (["--sql", "SELECT nope FROM buffers"], 1, "DuckDB: Binder Error"),
        (["--sql", "SELECT 1 FROM orderz"], 1, "no table 'orderz' in 'sluice_local'"),
        (["--sql", "SELECT ?", "--param", "a=1"], 2, "with --sql give values"),
    ],
)
def test_a_query_that_cannot_run_says_why_in_one_line(
    stack: Deployment,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    status: int,
    message: str,
) -> None:
    # WHEN the command is given something it cannot run
    got, out, err = sluice(capsys, "query", *argv)
    # THEN one line on stderr says why, with the exit status of its kind, and no traceback
    assert got == status
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("sluice query: ")
    assert message in line


# --- On Athena (--env) ------------------------------------------------------------------------


@pytest.fixture
def athena(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto's Athena with the deployment's workgroup, and `terraform output` of ENV=prod."""
    monkeypatch.setenv(environment.ROOT, str(tmp_path))
    (tmp_path / "build" / "terraform" / "prod").mkdir(parents=True)
    outputs = {"athena_workgroup": PROD.workgroup, "glue_database": PROD.database}
    document = json.dumps({name: {"value": value} for name, value in outputs.items()})

    def terraform(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        assert argv[0] == "terraform"
        assert "output" in argv
        return subprocess.CompletedProcess(argv, 0, stdout=document, stderr="")

    monkeypatch.setattr(subprocess, "run", terraform)
    client = boto3.client("athena", region_name=REGION)
    client.create_work_group(Name=PROD.workgroup)
    return athena_backends[DEFAULT_ACCOUNT_ID][REGION]


def queue(backend: Any, header: list[tuple[str, str]], rows: list[list[str | None]]) -> None:
    """Results as Athena gives a SELECT's: the header first, then the rows, as text."""
    info = [{"Name": name, "Label": name, "Type": kind} for name, kind in header]
    cells = [[{"VarCharValue": name} for name, _ in header]]
    cells += [[{"VarCharValue": v} if v is not None else {} for v in row] for row in rows]
    backend.query_results_queue.append(QueryResults([{"Data": c} for c in cells], info))


def test_env_runs_the_named_query_in_the_workgroup_with_its_parameters(
    athena: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN Athena's answer to the query
    queue(
        athena,
        [("file_id", "varchar"), ("size", "bigint"), ("event_time", "timestamp(3) with time zone")],
        [["f1", "12", "2026-12-07 09:01:00.000 UTC"], ["f1", None, None]],
    )
    # WHEN trace_file runs on Athena for ENV=prod
    status, out, err = sluice(
        capsys, "query", "--env", "prod", "trace_file", "orders/it's.ndjson", "2026-12-01", "--json"
    )
    # THEN Athena was asked for the named query, in the workgroup and database, with the
    # values as string literals
    assert status == 0, err
    (execution,) = athena.executions.values()
    trace = queries.find("trace_file", queries.named_queries([]))
    assert execution.query == trace.sql(PROD.database)
    assert execution.workgroup.name == PROD.workgroup
    assert execution.context == {"Catalog": "AwsDataCatalog", "Database": PROD.database}
    assert execution.execution_parameters == ["'orders/it''s.ndjson'", "'2026-12-01'"]
    # ... and its rows print typed, the header row left out
    assert json.loads(out) == [
        {"file_id": "f1", "size": 12, "event_time": "2026-12-07 09:01:00.000 UTC"},
        {"file_id": "f1", "size": None, "event_time": None},
    ]
    assert f"in workgroup {PROD.workgroup}" in err
    assert "athena: SUCCEEDED" in err


def test_env_runs_sql_without_parameters_and_prints_a_table(
    athena: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN Athena's answer
    queue(athena, [("dt", "varchar"), ("files", "bigint")], [["2026-12-07", "1234"]])
    # WHEN ad-hoc SQL runs on Athena
    status, out, _ = sluice(
        capsys, "query", "--env", "prod", "--sql", "SELECT dt, count(*) AS files FROM buffers"
    )
    # THEN no ExecutionParameters are sent (Athena refuses an empty list) and a table prints
    assert status == 0
    (execution,) = athena.executions.values()
    assert execution.execution_parameters is None
    assert out.splitlines() == [
        "dt          files",
        "----------  -----",
        "2026-12-07   1234",
        "1 row",
    ]


def test_env_without_athena_outputs_says_how_to_get_them(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a deployment whose Terraform outputs name no workgroup
    monkeypatch.setenv(environment.ROOT, str(tmp_path))
    (tmp_path / "build" / "terraform" / "prod").mkdir(parents=True)
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda argv, **_: subprocess.CompletedProcess(argv, 0, stdout="{}", stderr=""),
    )
    # WHEN a query runs on it, THEN one line says what is missing and what to do
    status, _, err = sluice(capsys, "query", "--env", "prod", "files_per_hour")
    assert status == 1
    assert err.strip() == (
        "sluice query: environment 'prod' has no Terraform output athena_workgroup, "
        "glue_database: run `make deploy ENV=prod` first"
    )


def stubbed(aws: None) -> tuple[Any, Stubber]:
    client = boto3.client("athena", region_name=REGION)
    return client, Stubber(client)


def execution(state: str, **status: Any) -> dict[str, Any]:
    return {
        "QueryExecution": {
            "QueryExecutionId": "q-1",
            "StatementType": "DML",
            "Status": {"State": state, **status},
            "Statistics": {"DataScannedInBytes": 2_500_000},
        }
    }


def test_results_are_read_page_by_page_after_polling(aws: None) -> None:
    # GIVEN Athena that runs the query for two polls, then answers in two pages
    client, stub = stubbed(aws)
    stub.add_response("start_query_execution", {"QueryExecutionId": "q-1"})
    for state in ("QUEUED", "RUNNING", "SUCCEEDED"):
        stub.add_response("get_query_execution", execution(state))
    info = {"ColumnInfo": [{"Name": "n", "Type": "integer"}]}
    stub.add_response(
        "get_query_results",
        {
            "ResultSet": {
                "Rows": [{"Data": [{"VarCharValue": "n"}]}, {"Data": [{"VarCharValue": "1"}]}],
                "ResultSetMetadata": info,
            },
            "NextToken": "page-2",
        },
    )
    stub.add_response(
        "get_query_results",
        {"ResultSet": {"Rows": [{"Data": [{"VarCharValue": "2"}]}], "ResultSetMetadata": info}},
        {"QueryExecutionId": "q-1", "NextToken": "page-2"},
    )
    said: list[str] = []
    waits: list[float] = []
    # WHEN the query runs
    with stub:
        result = run_athena(client, PROD, "SELECT n", [], say=said.append, sleep=waits.append)
    # THEN both pages' rows are there, the header row once left out, polls backing off
    assert result.rows == [(1,), (2,)]
    assert waits == [0.25, 0.375]
    assert [line.split(" after")[0] for line in said[1:]] == [
        "athena: QUEUED",
        "athena: RUNNING",
        "athena: SUCCEEDED",
    ]
    assert "2.5 MB scanned" in said[-1]


@pytest.mark.parametrize(
    ("state", "status", "message"),
    [
        (
            "FAILED",
            {
                "StateChangeReason": "COLUMN_NOT_FOUND: line 1:8: Column 'nope' cannot be resolved",
                "AthenaError": {"ErrorCategory": 2, "ErrorType": 1006},
            },
            "Athena query q-1 FAILED (user error): COLUMN_NOT_FOUND: line 1:8: Column 'nope'",
        ),
        (
            "CANCELLED",
            {"StateChangeReason": "Query exhausted the bytes scanned limit of the workgroup"},
            "Athena query q-1 CANCELLED: Query exhausted the bytes scanned limit",
        ),
    ],
)
def test_a_failed_or_cancelled_query_is_an_error_with_athenas_reason(
    aws: None, state: str, status: dict[str, Any], message: str
) -> None:
    # GIVEN Athena that fails (or cancels) the query
    client, stub = stubbed(aws)
    stub.add_response("start_query_execution", {"QueryExecutionId": "q-1"})
    stub.add_response("get_query_execution", execution(state, **status))
    # WHEN it runs, THEN the error says so with Athena's reason
    with stub, pytest.raises(AthenaQueryError) as raised:
        run_athena(client, PROD, "SELECT nope", [], say=lambda _m: None, sleep=lambda _s: None)
    assert str(raised.value).startswith(message)


def test_an_interrupted_query_is_stopped_on_athena(aws: None) -> None:
    # GIVEN a query still running on Athena
    client, stub = stubbed(aws)
    stub.add_response("start_query_execution", {"QueryExecutionId": "q-1"})
    stub.add_response("get_query_execution", execution("RUNNING"))
    stub.add_response("stop_query_execution", {}, {"QueryExecutionId": "q-1"})

    def interrupted(_seconds: float) -> None:
        raise KeyboardInterrupt

    said: list[str] = []
    # WHEN the wait for it is interrupted (Ctrl-C)
    with stub, pytest.raises(KeyboardInterrupt):
        run_athena(client, PROD, "SELECT 1", [], say=said.append, sleep=interrupted)
    # THEN Athena is told to stop it, and the operator is told so
    stub.assert_no_pending_responses()
    assert said[-1] == "athena: query q-1 stopped"
