"""`sluice query` without S3: the query files, their translation from Athena's SQL to DuckDB's,
and every named query executed by DuckDB over fixture objects laid out as in the staging bucket
(infrastructure/query/)."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import pytest

from infrastructure.local.stack.local_stack import PREFIX
from infrastructure.payload_tables import payload_tables, timestamp_text
from infrastructure.query import queries, results
from infrastructure.query.local import (
    LOCAL_DATABASE,
    Folder,
    LocalQueryError,
    connect,
    partition_filter,
    run_local,
)
from infrastructure.query.queries import (
    Parameter,
    ParameterError,
    QueryFileError,
    bind,
    named_queries,
)
from infrastructure.query.results import Result
from infrastructure.query.tables import (
    ERRORS_COLUMNS,
    QueryTable,
    TableTypeError,
    all_tables,
    buffers_table,
    duckdb_type,
)
from infrastructure.query.translate import Condition, TranslateError, translate
from infrastructure.tunables import SCHEMAS_DIR, load_tunables

TERRAFORM: Final = Path(__file__).resolve().parents[2] / "infrastructure" / "terraform"
BUCKET: Final = "sluice-unit-staging"
TABLES: Final = all_tables()
PAYLOAD: Final = [t.name for t in payload_tables(load_tunables().processor.payload_schemas)]
COLUMNS: Final = {name: table.column_names for name, table in TABLES.items()}
TODAY: Final = datetime.now(UTC).date()
YESTERDAY: Final = TODAY - timedelta(days=1)
OLD: Final = TODAY - timedelta(days=10)


def dt(day: date) -> str:
    return day.isoformat()


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def envelope(file_id: str, key: str, landed: datetime, **extra: Any) -> dict[str, Any]:
    """A staged envelope (infrastructure/schemas/envelope.avsc), as the processor leaves it."""
    return {
        "schema_version": 1,
        "file_id": file_id,
        "bucket": "sluice-unit-landing",
        "key": key,
        "version_id": f"v-{file_id}",
        "sequencer": None,
        "etag": None,
        "size": 10,
        "event_time_ms": ms(landed),
        "forwarded_at_ms": ms(landed) + 50,
        "body_encoding": "utf8",
        "body": "0123456789",
        "body_sha256": None,
        "requeue_attempts": None,
        "firehose_arrival_ms": ms(landed) + 100,
        "content_kind": "text",
        **extra,
    }


def row(
    table: str, values: dict[str, Any], number: int, landed: datetime, **source: Any
) -> dict[str, Any]:
    """A payload table's row: the schema's fields (all null when invalid), then the source."""
    fields = {c.name: values.get(c.name) for c in TABLES[table].columns[:-8]}
    return {
        **fields,
        "file_id": source.get("file_id", "fid"),
        "key": source.get("key", "k"),
        "version_id": "v1",
        "record_number": number,
        "event_time": timestamp_text(landed.timestamp()),
        "window_id": source.get("window_id", "w"),
        "valid": source.get("error") is None,
        "error": source.get("error"),
    }


def put(root: Path, key: str, lines: list[dict[str, Any]] | list[str]) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_bytes(gzip.compress(text.encode()))


def buffers_key(day: date, hour: int, window: str) -> str:
    return f"buffers/dt={dt(day)}/hour={hour:02d}/{window}.json.gz"


@pytest.fixture
def staging(tmp_path: Path) -> Folder:
    """A staging bucket's objects on disk: windows over three days (one file staged twice), the
    error output, and rows of two payload tables; customer_profiles has none."""
    root = tmp_path / BUCKET
    t8, t9, y23 = at(TODAY, 8, 5), at(TODAY, 9, 1), at(YESTERDAY, 23, 30)
    put(root, buffers_key(TODAY, 8, "w-a"), [
        envelope("f1", "orders/a.ndjson", t8),
        envelope("f2", "load/x y.json", t8),
    ])  # fmt: skip
    put(root, buffers_key(TODAY, 9, "w-b"), [
        envelope("f3", "readings/r.csv", t9),
        envelope("f1", "orders/a.ndjson", t8),
    ])  # fmt: skip
    put(root, buffers_key(YESTERDAY, 23, "w-c"), [envelope("f4", "load/z.bin", y23)])
    put(root, buffers_key(OLD, 0, "w-old"), [envelope("f5", "orders/a.ndjson", at(OLD, 0))])
    failed = {
        "attemptsMade": 4,
        "arrivalTimestamp": ms(t8),
        "errorCode": "Lambda.ProcessingFailed",
        "errorMessage": "the record failed",
        "attemptEndingTimestamp": ms(t9),
        "rawData": "e30=",
        "lambdaArn": "arn:aws:lambda:eu-west-2:000000000000:function:processor",
    }
    put(root, f"errors/processing-failed/dt={dt(TODAY)}/e-1.json.gz", [
        failed,
        {**failed, "arrivalTimestamp": ms(t9)},
    ])  # fmt: skip
    order = {"order_id": "O-1", "amount_pence": 250, "currency": "GBP", "note": None}
    put(root, f"tables/orders/dt={dt(TODAY)}/hour=08/w-a-0001.json.gz", [
        row("orders", order, 1, t8, file_id="f1", key="orders/a.ndjson", window_id="w-a"),
        row("orders", order | {"order_id": "O-2"}, 2, t8, file_id="f1", key="orders/a.ndjson",
            window_id="w-a"),
    ])  # fmt: skip
    reading = {"meter_id": "M-1", "read_at": "2026-12-07 08:00:00.000", "kwh": 1.5}
    late = at(TODAY, 8, 59)
    source = {"file_id": "f3", "key": "readings/r.csv", "window_id": "w-b"}
    put(root, f"tables/meter_readings/dt={dt(TODAY)}/hour=09/w-b-0001.json.gz", [
        row("meter_readings", reading, 1, late, **source),
        row("meter_readings", {}, 2, late, **source, error="kwh is 'lots', expected double"),
    ])  # fmt: skip
    return Folder(root, BUCKET)


def run(source: Folder, sql: str, *values: str) -> Result:
    return run_local(source, sql, values, tables=TABLES)


def named(name: str) -> queries.NamedQuery:
    return queries.find(name, named_queries(PAYLOAD))


VALUES: Final = {"since": dt(YESTERDAY), "key": "orders/a.ndjson"}
"""A value for each parameter the shipped queries name (any other gets yesterday's dt)."""


def names() -> Iterator[str]:
    """Every named query, read from the directory when the tests are collected."""
    for query in named_queries(PAYLOAD):
        yield query.name


def check_files_per_hour(result: Result) -> None:
    assert result.records() == [
        {"dt": dt(YESTERDAY), "hour": "23", "files": 1, "duplicate_records": 0, "windows": 1},
        {"dt": dt(TODAY), "hour": "08", "files": 2, "duplicate_records": 0, "windows": 1},
        {"dt": dt(TODAY), "hour": "09", "files": 2, "duplicate_records": 0, "windows": 1},
    ]


def check_duplicate_records(result: Result) -> None:
    assert result.records() == [
        {"file_id": "f1", "copies": 2, "windows": 2, "first_dt": dt(TODAY), "last_dt": dt(TODAY)}
    ]


def check_errors_by_code(result: Result) -> None:
    (record,) = result.records()
    assert record["errorcode"] == "Lambda.ProcessingFailed"
    assert record["records"] == 2
    assert record["first_arrival"] == f"{dt(TODAY)} 08:05:00.000 UTC"
    assert record["last_arrival"] == f"{dt(TODAY)} 09:01:00.000 UTC"


def check_trace_file(result: Result) -> None:
    found = [(r["dt"], r["hour"], r["window_id"], r["staged_object"]) for r in result.records()]
    assert found == [
        (dt(TODAY), "08", "w-a", f"s3://{BUCKET}/{buffers_key(TODAY, 8, 'w-a')}"),
        (dt(TODAY), "09", "w-b", f"s3://{BUCKET}/{buffers_key(TODAY, 9, 'w-b')}"),
    ]
    assert {r["event_time"] for r in result.records()} == {f"{dt(TODAY)} 08:05:00.000 UTC"}


def check_orders_rows_per_hour(result: Result) -> None:
    assert result.records() == [
        {"dt": dt(TODAY), "hour": "08", "rows": 2, "valid_rows": 2, "invalid_rows": 0, "files": 1}
    ]


def check_meter_readings_rows_per_hour(result: Result) -> None:
    assert result.records() == [
        {"dt": dt(TODAY), "hour": "09", "rows": 2, "valid_rows": 1, "invalid_rows": 1, "files": 1}
    ]


def check_meter_readings_invalid_rows(result: Result) -> None:
    (record,) = result.records()
    assert (record["key"], record["record_number"]) == ("readings/r.csv", 2)
    assert record["error"] == "kwh is 'lots', expected double"


def check_meter_readings_late_rows(result: Result) -> None:
    (record,) = result.records()
    assert (record["dt"], record["hour"], record["key"]) == (dt(TODAY), "09", "readings/r.csv")
    assert record["event_time"] == f"{dt(TODAY)} 08:59:00.000"


def check_no_rows(result: Result) -> None:
    assert result.rows == []


CHECKS: Final = {
    "files_per_hour": check_files_per_hour,
    "duplicate_records": check_duplicate_records,
    "errors_by_code": check_errors_by_code,
    "trace_file": check_trace_file,
    "orders_rows_per_hour": check_orders_rows_per_hour,
    "orders_invalid_rows": check_no_rows,
    "orders_late_rows": check_no_rows,
    "meter_readings_rows_per_hour": check_meter_readings_rows_per_hour,
    "meter_readings_invalid_rows": check_meter_readings_invalid_rows,
    "meter_readings_late_rows": check_meter_readings_late_rows,
}
"""What the fixture gives the queries known when this was written; any query added since is
executed all the same, and must give no rows for the empty customer_profiles table."""


@pytest.mark.parametrize("name", list(names()))
def test_every_named_query_translates_and_runs_over_the_staged_layout(
    staging: Folder, name: str
) -> None:
    # GIVEN a named query, as Terraform makes it of its file, and values for its parameters
    query = named(name)
    values = [VALUES.get(p.name, dt(YESTERDAY)) for p in query.parameters]
    # WHEN DuckDB runs it over the fixture's objects
    result = run(staging, query.sql(LOCAL_DATABASE), *values)
    # THEN it gives the columns its SELECT names, and the rows the fixture holds
    assert result.columns
    assert len(result.types) == len(result.columns)
    if query.table == "customer_profiles":
        check_no_rows(result)
    CHECKS.get(name, lambda _result: None)(result)


def test_the_checks_cover_the_queries_of_the_tables_with_rows() -> None:
    # GIVEN the shipped named queries, WHEN listed, THEN each operational one has its check here
    listed = set(names())
    operational = {q.name for q in named_queries(PAYLOAD) if q.table is None}
    assert operational <= set(CHECKS)
    assert set(CHECKS) <= listed


def test_only_the_partitions_a_query_pins_are_read(staging: Folder) -> None:
    # GIVEN a source that records the partitions it is asked for
    asked: list[str] = []

    class Recording(Folder):
        def sync(self, table: QueryTable, keep: Any) -> list[Path]:
            days = sorted(p.name[3:] for p in (self.directory / table.location).glob("dt=*"))
            asked.extend(d for d in days if keep(d))
            return super().sync(table, keep)

    source = Recording(staging.directory, BUCKET)
    # WHEN trace_file looks from today, and a query that says nothing of dt runs
    run(source, named("trace_file").sql(LOCAL_DATABASE), "orders/a.ndjson", dt(TODAY))
    pinned, asked[:] = list(asked), []
    everything = run(source, "SELECT count(*) AS n FROM buffers")
    # THEN the first reads today's partition only, the second every one
    assert pinned == [dt(TODAY)]
    assert asked == sorted([dt(OLD), dt(YESTERDAY), dt(TODAY)])
    assert everything.rows == [(6,)]


def test_select_star_gives_athenas_columns_and_the_path_only_when_named(staging: Folder) -> None:
    # WHEN every column of a table is asked for, and then the pseudo-column
    star = run(
        staging, "SELECT * FROM sluice_local.buffers WHERE dt = ? AND hour = '08'", dt(TODAY)
    )
    path = run(staging, "SELECT b.\"$path\", b.* FROM buffers b WHERE file_id = 'f2'")
    # THEN * is the envelope's fields then the partitions, as in Glue, without "$path"
    envelope_fields = json.loads((SCHEMAS_DIR / "envelope.avsc").read_text())["fields"]
    assert star.columns == (*(f["name"] for f in envelope_fields), "dt", "hour")
    assert len(star.rows) == 2
    # ... which is there when named, as the object's s3:// address
    assert path.columns[0] == "$path"
    assert path.rows[0][0] == f"s3://{BUCKET}/{buffers_key(TODAY, 8, 'w-a')}"
    assert path.columns[1:] == star.columns


def test_nested_columns_read_as_athena_types(tmp_path: Path) -> None:
    # GIVEN a customer profile with an address (struct), tags (array) and a timestamp
    root = tmp_path / BUCKET
    profile = {
        "customer_id": "C-1",
        "name": "Zoë",
        "email": None,
        "balance_pence": -5,
        "updated_at": "2026-12-07 08:00:00.123",
        "tags": ["vip", "new"],
        "address": {"line1": "1 High St", "city": "Leeds", "postcode": "LS1 1AA"},
    }
    put(root, f"tables/customer_profiles/dt={dt(TODAY)}/hour=08/w-0001.json.gz", [
        row("customer_profiles", profile, 1, at(TODAY, 8)),
    ])  # fmt: skip
    # WHEN members, elements and the timestamp are selected in Athena's SQL
    result = run(
        Folder(root, BUCKET),
        "SELECT address.city, tags[1] AS first_tag, cardinality(tags) AS n, updated_at, "
        "date_format(updated_at, '%Y-%m-%d %H') AS hour_of, address, tags, email "
        "FROM customer_profiles",
    )
    # THEN they read typed, and print as Athena prints them
    assert result.records() == [
        {
            "city": "Leeds",
            "first_tag": "vip",
            "n": 2,
            "updated_at": "2026-12-07 08:00:00.123",
            "hour_of": "2026-12-07 08",
            "address": "{line1=1 High St, city=Leeds, postcode=LS1 1AA}",
            "tags": "[vip, new]",
            "email": None,
        }
    ]
    assert result.types[:4] == ("varchar", "varchar", "bigint", "timestamp")


def test_an_empty_table_is_a_view_with_its_columns(tmp_path: Path) -> None:
    # GIVEN a bucket with nothing in it
    source = Folder(tmp_path / BUCKET, BUCKET)
    # WHEN a table is read
    result = run(source, 'SELECT *, "$path" FROM orders')
    # THEN it has no rows, and its Glue columns
    assert result.rows == []
    assert result.columns == (*TABLES["orders"].column_names, "$path")


def test_a_payload_object_that_is_not_json_fails_the_query_naming_it(tmp_path: Path) -> None:
    # GIVEN a payload table object with a line that is not JSON (the Hive SerDe fails on it)
    root = tmp_path / BUCKET
    key = f"tables/orders/dt={dt(TODAY)}/hour=08/w-0001.json.gz"
    put(root, key, ["{not json"])
    # WHEN it is read, THEN the error is one line naming the object by its s3:// address
    with pytest.raises(LocalQueryError) as raised:
        run(Folder(root, BUCKET), "SELECT count(*) FROM orders")
    assert "\n" not in str(raised.value)
    assert f"s3://{BUCKET}/{key}" in str(raised.value)


# --- Translation -------------------------------------------------------------------------------


def translated(sql: str, *values: str) -> Any:
    return translate(sql, values=values, database=LOCAL_DATABASE, tables=COLUMNS)


def test_placeholders_become_string_literals_in_order() -> None:
    # WHEN a query with `?` in code, in a string, in a quoted name and in a comment is bound
    result = translated(
        'SELECT \'?\' AS q, "key" AS "?" FROM buffers -- ?\nWHERE "key" = ? AND dt >= ?',
        "it's",
        "2026-12-01",
    )
    # THEN only the code's placeholders take the values, quoted as SQL strings
    assert "'it''s'" in result.sql
    assert "'2026-12-01'" in result.sql
    assert result.sql.count("?") == 3  # the string, the name and the comment keep theirs
    assert result.reads == {"buffers": ((Condition(">=", ("'2026-12-01'",)),),)}


@pytest.mark.parametrize(
    ("where", "conditions"),
    [
        ("dt = '2026-12-07'", ((Condition("=", ("'2026-12-07'",)),),)),
        ("'2026-12-07' <= dt AND hour = '08'", ((Condition(">=", ("'2026-12-07'",)),),)),
        ("(dt BETWEEN 'a' AND 'b')", ((Condition("between", ("'a'", "'b'")),),)),
        ("dt IN ('a', 'b') AND valid", ((Condition("in", ("'a'", "'b'")),),)),
        ("dt = 'a' OR dt = 'b'", None),
        ("hour = '08'", None),
        ("dt >= key", None),
    ],
)
def test_the_dt_conditions_of_a_single_table_select_bound_what_is_read(
    where: str, conditions: Any
) -> None:
    # WHEN a query of one table filters as given, THEN the partitions it reads are bounded so
    sql = "SELECT 1 FROM orders WHERE " + where  # noqa: S608  # the test's own conditions
    assert translated(sql).reads == {"orders": conditions}


def test_a_join_or_a_second_reference_widens_what_is_read() -> None:
    # WHEN a table is joined, or read twice (once bounded, once not)
    joined = translated(
        "SELECT 1 FROM orders o JOIN buffers b ON o.file_id = b.file_id WHERE o.dt = 'a'"
    )
    twice = translated(
        "SELECT 1 FROM orders WHERE dt = 'a' UNION ALL SELECT 1 FROM orders WHERE dt = 'b'"
    )
    both = translated("SELECT 1 FROM orders WHERE dt = 'a' UNION ALL SELECT 1 FROM orders")
    # THEN a joined table's partitions are not bounded by the WHERE; two bounded reads are both
    # read; an unbounded one reads everything
    assert joined.reads == {"orders": None, "buffers": None}
    assert twice.reads == {"orders": ((Condition("=", ("'a'",)),), (Condition("=", ("'b'",)),))}
    assert both.reads == {"orders": None}


def test_partition_values_are_evaluated_as_athena_would() -> None:
    # GIVEN conditions on dt with expressions of the current date (Athena's sessions are UTC)
    connection = connect()
    result = translated(
        "SELECT 1 FROM buffers WHERE dt >= date_format(current_date - INTERVAL '1' DAY, '%Y-%m-%d')"
    )
    # WHEN the partitions are filtered
    keep = partition_filter(connection, result.reads["buffers"])
    # THEN yesterday and today are read, not the day before
    assert [keep(dt(d)) for d in (OLD, YESTERDAY, TODAY)] == [False, True, True]
    assert partition_filter(connection, None)("anything")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT 1 FROM nowhere", "no table 'nowhere' in 'sluice_local'; its tables: buffers,"),
        ("SELECT 1 FROM other.buffers", "no database 'other' here"),
        ("SELECT 1; SELECT 2", "give one query, not 2 statements"),
        ("DROP TABLE buffers", "only queries (SELECT, WITH …) run locally, not DROP"),
        ("SELECT FROM WHERE (", "cannot read the SQL:"),
        ("SELECT ?", "the SQL has 1 `?` placeholder(s) but 0 value(s) are given"),
    ],
)
def test_sql_that_cannot_run_locally_says_why_in_one_line(sql: str, message: str) -> None:
    # WHEN SQL that cannot run is translated, THEN the error says why, on one line
    with pytest.raises(TranslateError) as raised:
        translated(sql)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_athena_functions_are_translated_for_duckdb(tmp_path: Path) -> None:
    # WHEN Athena's functions are used over no data
    result = run(
        Folder(tmp_path, BUCKET),
        "SELECT from_unixtime(0) AS t0, date_format(from_unixtime(86400), '%Y-%m-%d') AS d, "
        "cardinality(ARRAY[1, 2]) AS n, regexp_extract('w-1.json.gz', '([^/]+)\\.json\\.gz$', 1) "
        "AS w, approx_distinct(x) AS a, sum(x) / 2 AS half, sum(x) / 2e0 AS exact "
        "FROM (VALUES 1, 2, 2) AS t(x)",
    )
    # THEN DuckDB gives what Athena gives (a division of integers too)
    assert result.records() == [
        {
            "t0": "1970-01-01 00:00:00.000 UTC",
            "d": "1970-01-02",
            "n": 2,
            "w": "w-1",
            "a": 2,
            "half": 2,
            "exact": 2.5,
        }
    ]


# --- Query files, templates and parameters --------------------------------------------------


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_query_files_are_read_as_terraform_renders_them(tmp_path: Path) -> None:
    # GIVEN an operational query and a per-table template, with a parameter each
    write(tmp_path, "count.sql", "-- Count\n-- parameters: since (first dt)\n"
          'SELECT \'$${x}\' FROM "${database}"."${buffers_table}" WHERE dt >= ?\n')  # fmt: skip
    write(tmp_path, "per_table/rows.sql", '-- Rows\nSELECT 1 FROM "${database}"."${table}"\n')
    # WHEN the named queries are listed
    found = named_queries(["orders", "readings"], tmp_path)
    # THEN the template is one query per table, and the SQL is Terraform's templatefile result
    assert [q.name for q in found] == ["count", "orders_rows", "readings_rows"]
    count = found[0]
    assert count.description == "Count"
    assert count.parameters == (Parameter("since", "first dt"),)
    assert count.sql("db") == (
        "-- Count\n-- parameters: since (first dt)\n"
        'SELECT \'${x}\' FROM "db"."buffers" WHERE dt >= ?\n'
    )
    assert found[2].sql("db").endswith('FROM "db"."readings"\n')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT 1\n", "line 1 must be `-- <description>`"),
        ("-- d\nSELECT ? \n", "1 `?` placeholder(s) but 0 parameter(s) named on line 2"),
        ("-- d\n-- parameters: a (x), b\nSELECT ?\n", "1 `?` placeholder(s) but 2 parameter"),
        ("-- d\n-- parameters: A-b\nSELECT ?\n", "parameter 'A-b' is not `<name> (<what>)`"),
        ("-- d\n-- parameters: a, a\nSELECT ?, ?\n", "a parameter is named twice"),
        ('-- d\nSELECT 1 FROM "${tabel}"\n', "unknown template variable ${tabel}"),
        ("-- d\nSELECT %{ if x }1%{ endif }\n", "template directives"),
    ],
)
def test_a_query_file_that_cannot_be_used_is_named_with_the_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    # GIVEN a query file with a fault, WHEN the queries are read, THEN it is named and why
    path = write(tmp_path, "bad.sql", text)
    with pytest.raises(QueryFileError) as raised:
        named_queries([], tmp_path)
    assert str(path) in str(raised.value)
    assert message in str(raised.value)


def test_parameters_are_bound_by_position_or_by_name() -> None:
    parameters = (Parameter("key", "the key"), Parameter("since", "first dt"))
    # WHEN values are given by position, by name, or both, THEN they come out in order
    assert bind(parameters, ["k", "d"], {}, query="q") == ["k", "d"]
    assert bind(parameters, [], {"since": "d", "key": "k"}, query="q") == ["k", "d"]
    assert bind(parameters, ["k"], {"since": "d"}, query="q") == ["k", "d"]


@pytest.mark.parametrize(
    ("positional", "named_values", "message"),
    [
        (["k"], {}, "q needs parameter since (first dt): --param since=VALUE"),
        ([], {"sinse": "d", "key": "k"}, "q has no parameter sinse (its parameters: key"),
        (["k", "d", "x"], {}, "q takes 2 parameter(s) (key (the key), since (first dt)), 3 value"),
        (["k"], {"key": "k2", "since": "d"}, "parameter key given twice"),
    ],
)
def test_a_missing_or_unknown_parameter_is_named(
    positional: list[str], named_values: dict[str, str], message: str
) -> None:
    parameters = (Parameter("key", "the key"), Parameter("since", "first dt"))
    # WHEN the values do not fit, THEN the error names the parameter
    with pytest.raises(ParameterError) as raised:
        bind(parameters, positional, named_values, query="q")
    assert message in str(raised.value)


def test_an_unknown_query_name_suggests_the_close_ones() -> None:
    with pytest.raises(ParameterError) as raised:
        queries.find("files_per", named_queries(PAYLOAD))
    assert "did you mean files_per_hour?" in str(raised.value)


# --- Tables ------------------------------------------------------------------------------------


def hcl_list(name: str) -> list[tuple[str, str]]:
    """The (name, type) pairs of a list of column objects in locals.tf."""
    text = (TERRAFORM / "locals.tf").read_text()
    match = re.search(rf"^\s*{name}\s*=\s*\[(.*?)^\s*\]", text, re.M | re.S)
    assert match, f"locals.tf: {name} not found"
    return re.findall(r'name\s*=\s*"([^"]+)",\s*type\s*=\s*"([^"]+)"', match.group(1))


def test_the_operational_tables_have_terraforms_columns() -> None:
    # GIVEN Terraform's Glue columns of the error output, and of the envelope (from its schema)
    errors = hcl_list("errors_columns")
    envelope = json.loads((SCHEMAS_DIR / "envelope.avsc").read_text())["fields"]
    # THEN the tables sluice query reads have the same, in the same order
    assert [(c.name, c.glue_type) for c in ERRORS_COLUMNS] == errors
    assert [c.name for c in buffers_table().columns] == [f["name"] for f in envelope]
    assert TABLES["errors"].partitions == ("error_output_type", "dt")
    # ... and every payload table is there, with its schema's columns then the source columns
    for table in payload_tables(load_tunables().processor.payload_schemas):
        assert [c.name for c in TABLES[table.name].columns] == [c.name for c in table.columns]


def test_the_local_database_is_named_as_terraform_would_name_it() -> None:
    # Terraform: glue_database = replace(prefix, "-", "_"); the local stack's prefix
    assert PREFIX.replace("-", "_") == LOCAL_DATABASE


@pytest.mark.parametrize(
    ("glue", "duckdb"),
    [
        ("string", "VARCHAR"),
        ("bigint", "BIGINT"),
        ("timestamp", "TIMESTAMP"),
        ("decimal(12, 2)", "DECIMAL(12,2)"),
        ("array<string>", "VARCHAR[]"),
        ("map<string,bigint>", "MAP(VARCHAR, BIGINT)"),
        (
            "struct<line1:string,tags:array<int>,at:struct<x:double>>",
            'STRUCT("line1" VARCHAR, "tags" INTEGER[], "at" STRUCT("x" DOUBLE))',
        ),
    ],
)
def test_glue_types_map_to_duckdb_types(glue: str, duckdb: str) -> None:
    assert duckdb_type(glue) == duckdb


@pytest.mark.parametrize("glue", ["uniontype<int,string>", "array<string", "struct<a>"])
def test_a_glue_type_duckdb_cannot_read_is_named(glue: str) -> None:
    with pytest.raises(TableTypeError) as raised:
        duckdb_type(glue, where="t.c")
    assert raised.value.args[0].startswith("t.c: ")


# --- Results -----------------------------------------------------------------------------------


def test_athena_text_is_typed_by_its_column_type() -> None:
    assert results.from_athena_text("12", "bigint") == 12
    assert results.from_athena_text("1.5", "double") == 1.5
    assert results.from_athena_text("12.30", "decimal(10,2)") == Decimal("12.30")
    assert results.from_athena_text("true", "boolean") is True
    assert results.from_athena_text("1.0E-5", "double") == 1e-05
    assert results.from_athena_text("12.3.4", "decimal(10,2)") == "12.3.4"
    assert results.from_athena_text(None, "varchar") is None
    assert results.from_athena_text("2026-12-07 08:00:00.000 UTC", "timestamp") == (
        "2026-12-07 08:00:00.000 UTC"
    )


def test_results_print_as_a_table_json_and_csv() -> None:
    # GIVEN a result with a number column, text with a comma, and a NULL
    result = Result(
        ("dt", "files", "note"),
        ("varchar", "bigint", "varchar"),
        [("2026-12-07", 12, "a, b"), ("2026-12-08", 3, None)],
    )
    # WHEN printed each way, THEN numbers align right, NULL shows, counts close the table
    assert results.text_table(result).splitlines() == [
        "dt          files  note",
        "----------  -----  ----",
        "2026-12-07     12  a, b",
        "2026-12-08      3  NULL",
        "2 rows",
    ]
    assert json.loads(results.json_text(result)) == [
        {"dt": "2026-12-07", "files": 12, "note": "a, b"},
        {"dt": "2026-12-08", "files": 3, "note": None},
    ]
    assert results.csv_text(result).splitlines() == [
        "dt,files,note",
        '2026-12-07,12,"a, b"',
        "2026-12-08,3,",
    ]
    assert results.text_table(Result(("a",), ("bigint",), [(1,)])).endswith("\n1 row")
