"""A query on Athena, in the deployment's workgroup: StartQueryExecution, GetQueryExecution until
it ends, GetQueryResults page by page.

The workgroup (Terraform's `athena_workgroup`) enforces where results go and how many bytes a
query may scan; the database (`glue_database`) is the query's context, so unqualified table
names work as they do locally. `?` values are ExecutionParameters, as string literals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from infrastructure.query.queries import literal
from infrastructure.query.results import Result, Value, from_athena_text

FIRST_POLL_SECONDS: Final = 0.25
MAX_POLL_SECONDS: Final = 5.0
PROGRESS_EVERY_SECONDS: Final = 10.0
CATALOG: Final = "AwsDataCatalog"


class AthenaQueryError(RuntimeError):
    """The query failed or was cancelled on Athena; the message is Athena's reason."""


@dataclass(frozen=True, slots=True)
class AthenaTarget:
    environment: str
    region: str
    workgroup: str
    database: str


def run_athena(
    athena: Any,
    target: AthenaTarget,
    sql: str,
    values: Sequence[str],
    *,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Result:
    """Run `sql` with `values` for its `?` and return its rows once it has SUCCEEDED."""
    request: dict[str, Any] = {
        "QueryString": sql,
        "WorkGroup": target.workgroup,
        "QueryExecutionContext": {"Catalog": CATALOG, "Database": target.database},
    }
    if values:  # Athena refuses an empty list
        request["ExecutionParameters"] = [literal(v) for v in values]
    execution_id = athena.start_query_execution(**request)["QueryExecutionId"]
    say(f"athena: query {execution_id} in workgroup {target.workgroup}")
    try:
        execution = _wait(athena, execution_id, say=say, sleep=sleep, clock=clock)
    except KeyboardInterrupt:
        # Ctrl-C: the query would run on (and scan, and be billed) without anyone to read it.
        athena.stop_query_execution(QueryExecutionId=execution_id)
        say(f"athena: query {execution_id} stopped")
        raise
    return _results(athena, execution_id, dml=execution.get("StatementType", "DML") == "DML")


def _wait(
    athena: Any,
    execution_id: str,
    *,
    say: Callable[[str], None],
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> dict[str, Any]:
    started = clock()
    delay = FIRST_POLL_SECONDS
    last_said = started
    state = ""
    while True:
        execution: dict[str, Any] = athena.get_query_execution(QueryExecutionId=execution_id)[
            "QueryExecution"
        ]
        status = execution.get("Status", {})
        if status.get("State") != state or clock() - last_said >= PROGRESS_EVERY_SECONDS:
            state = status.get("State", "?")
            last_said = clock()
            scanned = execution.get("Statistics", {}).get("DataScannedInBytes", 0)
            say(f"athena: {state} after {clock() - started:.1f} s, {scanned / 1e6:,.1f} MB scanned")
        if state == "SUCCEEDED":
            return execution
        if state in ("FAILED", "CANCELLED"):
            raise AthenaQueryError(_failure(execution_id, state, status))
        sleep(delay)
        delay = min(delay * 1.5, MAX_POLL_SECONDS)


def _failure(execution_id: str, state: str, status: dict[str, Any]) -> str:
    reason = status.get("StateChangeReason") or "Athena gave no reason"
    error = status.get("AthenaError") or {}
    kind = {1: "system error", 2: "user error", 3: "unknown error"}.get(
        error.get("ErrorCategory", 0), ""
    )
    detail = f" ({kind})" if kind else ""
    return f"Athena query {execution_id} {state}{detail}: {reason}"


def _results(athena: Any, execution_id: str, *, dml: bool) -> Result:
    """Every page of the results. Of a SELECT, the first row of the first page is the header
    (Athena's result files are CSV with one); DDL results have none."""
    columns: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    rows: list[tuple[Value, ...]] = []
    first = True
    for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=execution_id):
        result_set = page.get("ResultSet", {})
        if first:
            info = result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])
            columns = tuple(c.get("Label") or c.get("Name", "") for c in info)
            types = tuple(c.get("Type", "varchar") for c in info)
        page_rows = result_set.get("Rows", [])
        if first and dml and page_rows:
            page_rows = page_rows[1:]
        first = False
        for row in page_rows:
            data = row.get("Data", [])
            texts = [cell.get("VarCharValue") for cell in data]
            texts += [None] * (len(columns) - len(texts))
            rows.append(tuple(from_athena_text(t, k) for t, k in zip(texts, types, strict=False)))
    return Result(columns, types, rows)
