"""CSV mapping files and rows -> Segment calls (no servers)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cdp_cli import csvmap

FIXTURES = Path(__file__).parent / "fixtures"


def items(csv_text: str, mapping_yaml: str, source: str = "crm", **kw) -> list[csvmap.Item]:
    m = csvmap.parse_mapping(mapping_yaml)
    return list(csvmap.csv_items(io.BytesIO(csv_text.encode()), m, source, **kw))


def fixture_items(name: str, source: str) -> list[csvmap.Item]:
    m = csvmap.load_mapping(FIXTURES / f"{name}.yaml")
    with open(FIXTURES / f"{name}.csv", "rb") as f:
        return list(csvmap.csv_items(f, m, source))


def test_crm_contacts_become_identify_calls_with_reserved_traits():
    its = fixture_items("crm_contacts", "crm")
    assert [i.error for i in its] == ["", "", "", ""]
    ada = its[0].call
    assert ada["type"] == "identify"
    assert ada["userId"] == "crm-C-1001"
    assert ada["identifiers"] == [{"type": "email", "value": "Ada.Lovelace@Example.com"},
                                  {"type": "phone", "value": "+442071234567"}]
    t = ada["traits"]
    assert t["email"] == "Ada.Lovelace@Example.com" and t["phone"] == "+442071234567"
    assert t["firstName"] == "Ada" and t["lastName"] == "Lovelace"
    assert t["birthday"] == "1985-12-10"
    assert t["address"] == {"street": "12 St James's Sq", "city": "London", "postalCode": "SW1Y 4JH", "country": "GB"}
    assert t["loyalty_points"] == 1200 and t["accepts_marketing"] is True
    assert ada["timestamp"] == "2024-03-01T09:30:00Z"  # Europe/London in March is UTC+0
    grace = its[1].call
    assert grace["traits"]["address"]["street"] == "1 Navy Way, Apt 2"  # quoted comma
    assert grace["traits"]["accepts_marketing"] is False
    assert "phone" not in grace["traits"]
    nobody = its[2].call
    assert nobody["userId"] == "crm-C-1003" and "identifiers" not in nobody
    assert set(nobody["traits"]) == {"firstName", "lastName"}  # empty cells are left out
    alan = its[3].call
    assert "loyalty_tier" not in alan["traits"]  # NULL is a missing value
    assert [(i.first_row, i.last_row) for i in its] == [(1, 1), (2, 2), (3, 3), (4, 4)]


def test_pos_rows_group_into_one_order_with_products():
    its = fixture_items("pos_transactions", "pos")
    assert [(i.first_row, i.last_row) for i in its] == [(1, 2), (3, 3), (4, 4)]
    order = its[0].call
    assert order["type"] == "track" and order["event"] == "Order Completed"
    assert order["anonymousId"] == "loyalty:L-77"
    assert order["identifiers"] == [{"type": "email", "value": "ada.lovelace@example.com"}]
    assert order["context"]["traits"] == {"email": "ada.lovelace@example.com"}
    p = order["properties"]
    assert p["order_id"] == "R-5001" and p["store_id"] == "berlin-01" and p["total"] == 109.8
    assert p["currency"] == "EUR"
    assert p["products"] == [{"sku": "SKU-1", "name": "Trail Runner", "price": 89.9, "quantity": 1},
                             {"sku": "SKU-9", "name": "Running Socks", "price": 9.95, "quantity": 2}]
    assert order["timestamp"] == "2024-03-05T09:12:00Z"
    anonymous = its[1].call
    assert "userId" not in anonymous and "anonymousId" not in anonymous  # ingest rejects it, and keeps it
    assert its[2].call is None and "column 'unit_price'" in its[2].error and "float" in its[2].error


def test_offsets_let_a_reader_resume_exactly():
    data = (FIXTURES / "pos_transactions.csv").read_bytes()
    m = csvmap.load_mapping(FIXTURES / "pos_transactions.yaml")
    full = list(csvmap.csv_items(io.BytesIO(data), m, "pos"))
    rest = list(csvmap.csv_items(io.BytesIO(data), m, "pos", offset=full[0].end, row=full[0].last_row))
    assert [(i.first_row, i.call) for i in rest] == [(i.first_row, i.call) for i in full[1:]]
    assert full[-1].end == len(data)


@pytest.mark.parametrize("typ,fmt,value,expected", [
    ("int", "", "42", 42), ("int", "", "1_000", 1000), ("float", "", "3.5", 3.5),
    ("bool", "", "Y", True), ("bool", "", "0", False), ("string", "", "007", "007"),
    ("date", "", "2024-02-29", "2024-02-29"), ("date", "%m/%d/%Y", "02/29/2024", "2024-02-29"),
    ("datetime", "", "2024-03-01T10:00:00+02:00", "2024-03-01T08:00:00Z"),
    ("datetime", "", "2024-03-01T10:00:00", "2024-03-01T10:00:00Z"),
    ("datetime", "unix", "1709287200", "2024-03-01T10:00:00Z"),
    ("datetime", "unix_ms", "1709287200000", "2024-03-01T10:00:00Z"),
])
def test_types(typ, fmt, value, expected):
    assert csvmap.convert(value, csvmap.Column("c", "trait.x", typ, fmt)) == expected


@pytest.mark.parametrize("typ,fmt,value", [("int", "", "4.2"), ("float", "", "nan"), ("bool", "", "maybe"),
                                           ("date", "%d/%m/%Y", "2024-01-01"), ("datetime", "", "yesterday")])
def test_bad_values_name_the_column(typ, fmt, value):
    with pytest.raises(csvmap.RowError, match="column 'c'"):
        csvmap.convert(value, csvmap.Column("c", "trait.x", typ, fmt))


def test_email_only_rows_get_a_stable_hashed_anonymous_id():
    its = items("mail,name\nAda@Example.com ,Ada\n", "kind: identify\ncolumns: {mail: email, name: trait.firstName}")
    call = its[0].call
    assert call["anonymousId"] == csvmap.anonymous_id_of("crm", "email", "ada@example.com")
    assert "example" not in call["anonymousId"]


def test_message_ids_follow_row_content():
    yaml_ = "kind: identify\ncolumns: {id: user_id, tier: trait.tier}"
    a = items("id,tier\n1,gold\n2,gold\n1,gold\n1,silver\n", yaml_)
    ids = [i.call["messageId"] for i in a]
    assert ids[0] == ids[2] and len({ids[0], ids[1], ids[3]}) == 3
    assert items("id,tier\n1,gold\n", yaml_, source="other")[0].call["messageId"] != ids[0]
    only_id = items("id,tier\n1,gold\n1,silver\n", yaml_ + "\nid_columns: [id]")
    assert only_id[0].call["messageId"] == only_id[1].call["messageId"]


def test_required_and_missing_columns():
    its = items("id,mail\n,a@example.com\n", "kind: identify\ncolumns: {id: {to: user_id, required: true}, mail: email}")
    assert "column 'id': is required" in its[0].error
    with pytest.raises(csvmap.MappingError, match="not in the CSV header: nope"):
        items("id\n1\n", "kind: identify\ncolumns: {nope: user_id}")


def test_semicolon_delimiter_bom_and_blank_lines():
    text = "\ufeffid;city\n1;Paris\n\n2;Lyon\n"
    its = items(text, "kind: identify\ndelimiter: ';'\ncolumns: {id: user_id, city: trait.address.city}")
    assert [i.call["traits"]["address"]["city"] for i in its] == ["Paris", "Lyon"]


@pytest.mark.parametrize("doc,message", [
    ("kind: page\ncolumns: {a: user_id}", "kind"),
    ("kind: track\ncolumns: {a: user_id}", "event"),
    ("kind: identify\ncolumns: {a: nowhere}", "columns.a.to"),
    ("kind: identify\ncolumns: {a: {to: trait.x, type: money}}", "columns.a.type"),
    ("kind: identify\ncolumns: {a: {to: timestamp, timezone: Mars/Base}}", "columns.a.timezone"),
    ("kind: identify\ncolumns: {a: property.x}", "traits, not propertys"),
    ("kind: identify\ncolumns: {a: trait.x}\ngroup_by: a", "group_by"),
    ("kind: identify\ncolumns: {a: {to: trait.x, prefix: p}}", "prefix"),
    ("kind: identify\ncolumns: {a: user_id}\nextra: 1", "unknown keys extra"),
    ("[1, 2", "not valid YAML"),
])
def test_bad_mappings(doc, message):
    with pytest.raises(csvmap.MappingError, match=message):
        csvmap.parse_mapping(doc)


def test_context_traits_from_the_mapping_survive_identifier_traits():
    from cdp_cli import csvmap

    m = csvmap.parse_mapping(
        "kind: track\nevent: Order Completed\ncolumns:\n  email: {to: email}\n  name: {to: context.traits.firstName}\n")
    call = csvmap.RowMapper(m, ["email", "name"], "pos").call([["ana@example.com", "Ana"]])
    assert call["context"]["traits"] == {"email": "ana@example.com", "firstName": "Ana"}


def test_rows_known_only_by_a_name_get_an_anonymous_id_from_the_named_column():
    mapping = ("kind: track\nevent: Order Completed\ngroup_by: receipt\nanonymous_from: receipt\n"
               "columns: {receipt: property.order_id, loyalty: {to: anonymous_id, prefix: 'loyalty:'}, "
               "last: context.traits.lastName}")
    its = items("receipt,loyalty,last\nR1,,Sanz\nR2,L7,Ruiz\nR3,,\n", mapping, source="pos")
    by_order = {i.call["properties"]["order_id"]: i.call for i in its}
    assert by_order["R1"]["anonymousId"] == csvmap.anonymous_id_of("pos", "receipt", "R1")
    assert by_order["R1"]["context"]["traits"] == {"lastName": "Sanz"}
    assert by_order["R2"]["anonymousId"] == "loyalty:L7"  # a real identifier wins
    with pytest.raises(csvmap.MappingError, match="anonymous_from"):
        items("a\n1\n", "kind: track\nevent: E\nanonymous_from: [x]\ncolumns: {a: property.a}")
