"""Payload schemas: rules from tunables, longest prefix wins, JSON / NDJSON bodies checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infrastructure.tunables import PayloadSchemaRule, TunablesError, load_tunables
from transform import payload_schemas
from transform.payload_schemas import PayloadSchemaError

ORDER = b'{"order_id": "o-1", "amount_pence": 1250, "currency": "GBP"}'


def order_rule(prefix: str = "orders/", fmt: str = "ndjson") -> PayloadSchemaRule:
    return PayloadSchemaRule(
        prefix=prefix, schema="payloads/order.avsc", format=fmt, table="orders"
    )


def test_packaged_tunables_load_the_order_rule() -> None:
    # GIVEN the packaged tunables WHEN their payload schemas load
    schemas = payload_schemas.load(load_tunables().processor.payload_schemas)
    # THEN orders/ keys get the NDJSON order schema and other keys none
    rule = schemas.for_key("orders/2024/a.ndjson")
    assert rule is not None
    assert (rule.prefix, rule.schema, rule.format) == ("orders/", "payloads/order.avsc", "ndjson")
    assert schemas.for_key("acme/orders/a.ndjson") is None
    assert schemas.for_key("orders") is None


def test_longest_prefix_wins_whatever_the_order() -> None:
    # GIVEN a short and a long prefix, listed short first
    schemas = payload_schemas.load([order_rule("orders/"), order_rule("orders/single/", "json")])
    # WHEN keys are looked up THEN the longest matching prefix chooses the rule
    single = schemas.for_key("orders/single/x.json")
    assert single is not None
    assert single.format == "json"
    other = schemas.for_key("orders/batch/x.ndjson")
    assert other is not None
    assert other.format == "ndjson"


def test_no_rules_checks_nothing() -> None:
    # GIVEN no rules WHEN a key is looked up THEN no schema applies
    assert payload_schemas.load([]).for_key("orders/a.ndjson") is None


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([order_rule(), order_rule()], "twice"),
        ([order_rule(fmt="xml")], "format"),
        ([order_rule(fmt="csv")._replace(invalid="quarantine")], "csv type reports"),
        ([PayloadSchemaRule("x/", "payloads/none.avsc", "json", "x")], "cannot load"),
    ],
    ids=["duplicate-prefix", "unknown-format", "csv-quarantine", "missing-file"],
)
def test_bad_rules_fail_the_cold_start(rules: list[PayloadSchemaRule], message: str) -> None:
    # GIVEN a rule set that cannot be applied unambiguously WHEN loaded THEN it is refused
    with pytest.raises(TunablesError, match=message):
        payload_schemas.load(rules)


def test_invalid_avro_schema_fails_the_cold_start(tmp_path: Path) -> None:
    # GIVEN a schema file naming an unknown type (an absolute path joins SCHEMAS_DIR as itself)
    bad = {"type": "record", "name": "X", "fields": [{"name": "a", "type": "Nope"}]}
    (tmp_path / "bad.avsc").write_text(json.dumps(bad))
    rule = PayloadSchemaRule("x/", str(tmp_path / "bad.avsc"), "json", "x")
    # WHEN it is loaded THEN the error names the prefix
    with pytest.raises(TunablesError, match="'x/'"):
        payload_schemas.load([rule])


@pytest.mark.parametrize(
    "body",
    [
        ORDER + b"\n",
        ORDER,
        ORDER + b"\r\n" + ORDER + b"\r\n",
        b"\n" + ORDER + b"\n\n  \n" + ORDER,
        b"",
        '{"order_id": "注文-1", "amount_pence": 1, "currency": "EUR", "note": "🎉"}'.encode(),
    ],
    ids=["one-line", "no-final-newline", "crlf", "blank-lines", "empty", "non-ascii"],
)
def test_valid_ndjson_passes(body: bytes) -> None:
    # GIVEN NDJSON orders WHEN checked THEN no error
    payload_schemas.load([order_rule()]).rules[0].check(body)


def test_check_lines_counts_values() -> None:
    # GIVEN lines as delivery streams them, blank ones included
    rule = payload_schemas.load([order_rule()]).rules[0]
    # WHEN checked THEN the non-blank values are counted
    assert rule.check_lines([ORDER + b"\n", b"\n", ORDER]) == 2


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (ORDER + b"\n" + b'{"order_id": "o", "amount_pence": 1.5, "currency": "GBP"}', "line 2"),
        (ORDER + b"\n\n" + b'{"order_id": "o", "currency": "GBP"}', "line 3"),
        (b'{"order_id": "o", "amount_pence": 1, "currency": "JPY"}', "currency"),
        (b"[1, 2]", "line 1"),
        (ORDER + b"\n{not json", "line 2 is not JSON"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_invalid_ndjson_names_the_line_and_field(body: bytes, expected: str) -> None:
    # GIVEN an NDJSON body with one bad line WHEN checked THEN the error says where
    rule = payload_schemas.load([order_rule()]).rules[0]
    with pytest.raises(PayloadSchemaError, match=expected) as raised:
        rule.check(body)
    # AND it stays short: fastavro's own text would embed the whole parsed schema
    assert "__fastavro_parsed" not in str(raised.value)
    assert len(str(raised.value)) < 400


def test_field_errors_name_the_field() -> None:
    # GIVEN an order with a string amount and a missing order_id
    rule = payload_schemas.load([order_rule(fmt="json")]).rules[0]
    with pytest.raises(PayloadSchemaError) as raised:
        rule.check(b'{"amount_pence": "12", "currency": "GBP"}')
    # THEN the first bad field is named, as missing
    assert "order_id is missing or null, expected string" in str(raised.value)


def test_long_values_are_cut_in_messages() -> None:
    # GIVEN an order whose amount is a long string
    rule = payload_schemas.load([order_rule(fmt="json")]).rules[0]
    body = json.dumps({"order_id": "o", "amount_pence": "9" * 10_000, "currency": "GBP"})
    # WHEN checked THEN the message shows only the start of the value
    with pytest.raises(PayloadSchemaError, match=r"amount_pence is '9+\.\.\. \(str\)"):
        rule.check(body)


@pytest.mark.parametrize(
    "body",
    [ORDER + b"\n" + ORDER, b"", b"null", b"  "],
    ids=["two-values", "empty", "null", "blank"],
)
def test_json_format_needs_exactly_one_valid_value(body: bytes) -> None:
    # GIVEN a json-format rule WHEN a body is not one order THEN it fails
    rule = payload_schemas.load([order_rule(fmt="json")]).rules[0]
    with pytest.raises(PayloadSchemaError, match="body"):
        rule.check(body)


def test_json_format_accepts_one_value_with_whitespace() -> None:
    # GIVEN one order, pretty-printed with a trailing newline WHEN checked THEN it passes
    rule = payload_schemas.load([order_rule(fmt="json")]).rules[0]
    rule.check(json.dumps(json.loads(ORDER), indent=2) + "\n")


def test_a_type_that_reports_invalid_records_holds_nothing_back() -> None:
    # GIVEN a csv type and a json type whose invalid records are reported, under an ndjson type
    schemas = payload_schemas.load(
        [
            order_rule("orders/"),
            order_rule("orders/csv/", "csv")._replace(table="csv_orders"),
            order_rule("orders/lenient/", "json")._replace(table="lenient", invalid="report"),
        ]
    )
    # WHEN a key of each is looked up THEN only the ndjson type checks (and holds back) bodies
    assert schemas.for_key("orders/a.ndjson") is not None
    assert schemas.for_key("orders/csv/a.csv") is None
    assert schemas.for_key("orders/lenient/a.json") is None


def test_a_json_array_is_checked_item_by_item() -> None:
    # GIVEN a json type WHEN an array with a bad second order is checked
    rule = payload_schemas.load([order_rule(fmt="json")]).rules[0]
    good = {"order_id": "a", "amount_pence": 1, "currency": "GBP", "note": None}
    body = json.dumps([good, {**good, "currency": "JPY"}])
    # THEN the error names the item
    with pytest.raises(PayloadSchemaError, match="item 2"):
        rule.check(body)
    rule.check(json.dumps([good, good]))
