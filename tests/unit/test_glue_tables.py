"""The payload tables' Glue definitions (infrastructure/glue_tables.py) against their Avro schemas,
and the per-table query templates (infrastructure/terraform/queries/per_table/) they feed.

The checked-in infrastructure/schemas/payload_tables.json is what glue_athena.tf makes the Glue
tables from; the first test fails whenever a schema, a payload type or the source columns change
without `make tables`. `terraform test` (tests/glue_athena.tftest.hcl) checks that the planned
tables follow the file; here, that the file follows the schemas.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import duckdb
import pytest
import sqlglot

from infrastructure import glue_tables
from infrastructure.glue_tables import GlueTablesError, definitions, disagreements, render
from infrastructure.payload_tables import SOURCE_COLUMNS, payload_table
from infrastructure.tunables import SCHEMAS_DIR, PayloadSchemaRule

TERRAFORM: Final = Path(__file__).resolve().parents[2] / "infrastructure" / "terraform"
PER_TABLE: Final = TERRAFORM / "queries" / "per_table"
KINDS: Final = ("rows_per_hour", "invalid_rows", "late_rows")

DUCKDB_TYPES: Final = {
    "string": "VARCHAR",
    "bigint": "BIGINT",
    "timestamp": "TIMESTAMP",
    "boolean": "BOOLEAN",
}
"""The Glue types of the orders table as DuckDB spells them (for the query templates' test)."""


def checked_in() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(glue_tables.DEFINITIONS_FILE.read_text())
    return document


def write_schema(directory: Path, fields: list[dict[str, Any]]) -> str:
    path = directory / "thing.avsc"
    path.write_text(json.dumps({"type": "record", "name": "Thing", "fields": fields}))
    return str(path)


def test_the_checked_in_tables_follow_the_payload_schemas() -> None:
    # GIVEN the payload types of the tunables and their Avro schemas
    tables = glue_tables.current_tables()
    # WHEN the checked-in definitions are compared with what they give
    found = disagreements(checked_in(), tables)
    # THEN they agree, column by column, and the file is exactly what `make tables` writes
    assert found == [], (
        f"payload_tables.json is out of date ({'; '.join(found)}): run `make tables`"
    )
    assert glue_tables.DEFINITIONS_FILE.read_text() == render(definitions(tables)), (
        "payload_tables.json differs from what `make tables` writes: run `make tables`"
    )


def test_each_table_is_its_schema_fields_then_the_source_columns() -> None:
    # GIVEN the checked-in definitions
    for name, table in checked_in()["tables"].items():
        # WHEN its columns are read against its Avro schema
        schema = json.loads((SCHEMAS_DIR / table["schema"]).read_text())
        names = [column["name"] for column in table["columns"]]
        # THEN the schema's fields come first, in order, then the source columns
        fields = [field["name"] for field in schema["fields"]]
        assert names == fields + [column for column, _, _ in SOURCE_COLUMNS], name
        assert table["location"] == f"tables/{name}/"


def test_a_schema_change_without_make_tables_is_named_column_by_column(tmp_path: Path) -> None:
    # GIVEN a payload type whose definitions were generated from its schema
    fields = [{"name": "id", "type": "string"}, {"name": "count", "type": "int"}]
    rule = PayloadSchemaRule("things/", write_schema(tmp_path, fields), "ndjson", "things")
    generated = json.loads(render(definitions([payload_table(rule)])))
    # WHEN the schema changes: a field retyped, one added, one removed
    changed: list[dict[str, Any]] = [
        {"name": "id", "type": "long"},
        {"name": "seen_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ]
    write_schema(tmp_path, changed)
    found = disagreements(generated, [payload_table(rule)])
    # THEN each disagreement is reported, naming the table, the column and the types
    assert f"table things: column id is string, {rule.schema} makes it bigint" in found
    assert f"table things: column seen_at of {rule.schema} is missing" in found
    assert f"table things: column count is not in {rule.schema}" in found


def test_a_reordered_or_missing_table_is_reported(tmp_path: Path) -> None:
    # GIVEN definitions of one table
    rule = PayloadSchemaRule(
        "things/", write_schema(tmp_path, [{"name": "a", "type": "string"}]), "json", "things"
    )
    document = definitions([payload_table(rule)])
    # WHEN its columns are reordered, and when another payload type has no definitions
    document["tables"]["things"]["columns"].reverse()
    other = PayloadSchemaRule("others/", "payloads/order.avsc", "ndjson", "others")
    found = disagreements(document, [payload_table(rule), payload_table(other)])
    # THEN both are reported
    assert any(line.startswith("table things: columns are not in") for line in found)
    assert "table others (payloads/order.avsc) is missing" in found


@pytest.mark.parametrize("name", sorted(glue_tables.OPERATIONAL_TABLES))
def test_a_payload_table_named_like_an_operational_table_is_refused(name: str) -> None:
    # GIVEN a payload type whose table takes the name of an operational Glue table
    rule = PayloadSchemaRule("orders/", "payloads/order.avsc", "ndjson", name)
    # WHEN its definitions are generated THEN it is refused, naming the clash and the fix
    with pytest.raises(GlueTablesError, match=rf"payload table '{name}'.*clashes.*tunables\.json"):
        definitions([payload_table(rule)])


def test_the_operational_tables_are_those_glue_athena_defines() -> None:
    # GIVEN glue_athena.tf's own tables (local.glue_tables: its keys at four spaces' indent)
    text = (TERRAFORM / "glue_athena.tf").read_text()
    match = re.search(r"^  glue_tables = \{\n(.*?)^  \}\n", text, re.M | re.S)
    assert match, "glue_athena.tf: local glue_tables not found"
    defined = set(re.findall(r"^    ([a-z_]+) = \{", match.group(1), re.M))
    # THEN they are the names the generator refuses for payload tables
    assert defined == glue_tables.OPERATIONAL_TABLES


@pytest.mark.parametrize(
    "fields",
    [
        [{"name": "orderId", "type": "string"}],
        [
            {
                "name": "address",
                "type": {
                    "type": "record",
                    "name": "A",
                    "fields": [{"name": "Line1", "type": "string"}],
                },
            }
        ],
    ],
    ids=["column", "struct-member"],
)
def test_a_name_glue_would_lower_case_is_refused(
    tmp_path: Path, fields: list[dict[str, Any]]
) -> None:
    # GIVEN a schema with a field or struct member spelled in mixed case
    rule = PayloadSchemaRule("things/", write_schema(tmp_path, fields), "ndjson", "things")
    # WHEN its definitions are generated THEN it is refused: the Hive JSON SerDe would read null
    with pytest.raises(GlueTablesError, match=r"not lower case.*rename them in the schema"):
        definitions([payload_table(rule)])


def test_comments_come_from_the_schema_and_fit_glue(tmp_path: Path) -> None:
    # GIVEN fields with a long doc, an enum without one, and a plain one
    fields: list[dict[str, Any]] = [
        {"name": "a", "type": "string", "doc": "word " * 100},
        {"name": "b", "type": {"type": "enum", "name": "B", "symbols": ["X", "Y"]}},
        {"name": "c", "type": "long"},
    ]
    rule = PayloadSchemaRule("things/", write_schema(tmp_path, fields), "ndjson", "things")
    # WHEN the definitions are generated
    columns = definitions([payload_table(rule)])["tables"]["things"]["columns"]
    comments = {column["name"]: column["comment"] for column in columns}
    # THEN the doc is cut to Glue's 255 characters, the enum lists its symbols, a plain field
    # has no comment
    assert len(comments["a"]) == glue_tables.COMMENT_LIMIT
    assert comments["a"].endswith("…")
    assert comments["b"] == "one of X, Y (Avro enum B)"
    assert comments["c"] is None


def test_make_tables_writes_the_file_and_check_fails_until_it_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a stale definitions file
    target = tmp_path / "payload_tables.json"
    stale = checked_in()
    stale["tables"]["orders"]["columns"][1]["type"] = "int"
    target.write_text(json.dumps(stale))
    monkeypatch.setattr(glue_tables, "DEFINITIONS_FILE", target)
    # WHEN it is checked THEN the check fails, naming the column and `make tables`
    assert glue_tables.main(["--check"]) == 1
    error = capsys.readouterr().err
    assert "column amount_pence is int, payloads/order.avsc makes it bigint" in error
    assert "run `make tables`" in error
    # WHEN it is regenerated THEN it is the checked-in file, and the check passes
    assert glue_tables.main([]) == 0
    assert target.read_text() == (SCHEMAS_DIR / "payload_tables.json").read_text()
    assert glue_tables.main(["--check"]) == 0


def test_the_query_templates_follow_the_query_file_convention() -> None:
    # GIVEN each per-table template
    templates = sorted(PER_TABLE.glob("*.sql"))
    assert {path.stem for path in templates} >= set(KINDS)
    for path in templates:
        lines = path.read_text().splitlines()
        # THEN line 1 describes it, line 2 names its `?` parameters in order (when it has any)
        assert lines[0].startswith("-- "), path.name
        assert len(lines[0]) > 10, path.name
        placeholders = path.read_text().count("?")
        named = (
            re.findall(r"(\w+) \([^)]*\)", lines[1].removeprefix("-- parameters:"))
            if lines[1].startswith("-- parameters:")
            else []
        )
        assert len(named) == placeholders, path.name
        # AND it names only the database and its table
        assert set(re.findall(r"\$\{(\w+)\}", path.read_text())) == {"database", "table"}, path.name


def orders_rows(dt: str, hour: str) -> list[dict[str, Any]]:
    """Rows of two files staged in dt/hour: one landed that hour (a valid and an invalid row),
    one landed the hour before (late)."""
    source = {"version_id": "v1", "window_id": "w-1"}
    return [
        {"order_id": "O-1", "amount_pence": 100, "currency": "GBP", "note": None, "file_id": "f1",
         "key": "orders/a.ndjson", "record_number": 1, "event_time": f"{dt} {hour}:10:00.000",
         "valid": True, "error": None, **source},
        {"order_id": None, "amount_pence": None, "currency": None, "note": None, "file_id": "f1",
         "key": "orders/a.ndjson", "record_number": 2, "event_time": f"{dt} {hour}:10:00.000",
         "valid": False, "error": "amount_pence: not a long", **source},
        {"order_id": "O-2", "amount_pence": 5, "currency": "EUR", "note": "x", "file_id": "f2",
         "key": "orders/b.ndjson", "record_number": 1, "event_time": "2020-01-01 23:59:59.999",
         "valid": True, "error": None, **source},
    ]  # fmt: skip


def test_the_per_table_queries_translate_to_duckdb_and_count_what_was_written() -> None:
    # GIVEN the orders table in DuckDB with its Glue columns and the dt/hour partitions, holding
    # rows staged today at 00h (the late file landed on another day)
    connection = duckdb.connect()
    columns = checked_in()["tables"]["orders"]["columns"]
    spec = ", ".join(f'"{c["name"]}" {DUCKDB_TYPES[c["type"]]}' for c in columns)
    connection.execute(
        f'CREATE SCHEMA db; CREATE TABLE db.orders ({spec}, dt VARCHAR, "hour" VARCHAR)'
    )
    (today,) = connection.execute("SELECT strftime(current_date, '%Y-%m-%d')").fetchone() or ("",)
    for row in orders_rows(today, "00"):
        names = [*row, "dt", "hour"]
        values = [*row.values(), today, "00"]
        quoted = ", ".join(f'"{name}"' for name in names)
        placeholders = ", ".join("?" * len(values))
        insert = f"INSERT INTO db.orders ({quoted}) VALUES ({placeholders})"  # noqa: S608  # names from the definitions, values bound
        connection.execute(insert, values)

    def run(kind: str) -> list[tuple[Any, ...]]:
        template = (PER_TABLE / f"{kind}.sql").read_text()
        athena = template.replace("${database}", "db").replace("${table}", "orders")
        (sql,) = sqlglot.transpile(athena, read="trino", write="duckdb")
        return connection.execute(sql, [today] * athena.count("?")).fetchall()

    # WHEN each query runs THEN rows_per_hour counts rows, valid, invalid and files
    assert run("rows_per_hour") == [(today, "00", 3, 2, 1, 2)]
    # AND invalid_rows lists the invalid row with its file, number and error
    [invalid] = run("invalid_rows")
    assert invalid[:5] == (today, "00", "orders/a.ndjson", 2, "amount_pence: not a long")
    # AND late_rows lists the file that landed in an earlier hour, with its row count
    [late] = run("late_rows")
    assert (late[2], late[3], late[5], late[6]) == ("orders/b.ndjson", "f2", "2020-01-01 23", 1)
