import json

import pytest

from cdp.common.v1 import identifier_pb2
from cdp.ingest.v1 import events_pb2
from cdp_core.errors import PoisonMessage
from cdp_identity import normalize as nz
from cdp_identity.domain import identifiers_of
from cdp_identity.normalize import DEFAULT_REGION, MAX_LENGTH, IdentifierTypes, InvalidIdentifier, check, normalize

TYPES = IdentifierTypes(custom=["crm_id", "loyalty_id", "shopify_customer_id"])


# --- emails ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("ada@example.com", "ada@example.com"),
    ("  Ada@Example.COM \t", "ada@example.com"),
    ("ADA.LOVELACE+news@EXAMPLE.co.uk", "ada.lovelace+news@example.co.uk"),
    ("x@MÜNCHEN.de", "x@münchen.de"),
    ("x@xn--mnchen-3ya.de", "x@münchen.de"),  # the IDNA (punycode) form is the same address
    ("Élodie@exämple.com", "élodie@exämple.com"),
])
def test_emails_are_normalized_and_lower_cased(raw, expected):
    assert normalize("email", raw) == expected


@pytest.mark.parametrize("raw", [
    "", "   ", "not-an-email", "a@b", "a b@example.com", "@example.com", "ada@", "ada@@example.com",
    "ada@localhost", "ada@example..com",
])
def test_invalid_emails_are_none(raw):
    assert normalize("email", raw) is None


def test_check_says_why_without_quoting_the_value():
    with pytest.raises(InvalidIdentifier) as e:
        check("email", "secret-person")
    assert e.value.reason == "is not a valid email address"
    assert "secret-person" not in str(e.value)


def test_email_validation_is_cached_and_bounded():
    nz._email.cache_clear()
    for _ in range(3):
        normalize("email", "cached@example.com")
    info = nz._email.cache_info()
    assert info.hits == 2 and info.maxsize == nz.CACHE_SIZE


# --- phones ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw, region, expected", [
    ("612 34 56 78", "ES", "+34612345678"),
    ("612-34-56-78", "ES", "+34612345678"),
    ("0034 612345678", "ES", "+34612345678"),
    ("+34 612 345 678", "US", "+34612345678"),
    ("+34612345678", "ES", "+34612345678"),
    ("(201) 555-0123", "US", "+12015550123"),
    ("201.555.0123", "US", "+12015550123"),
    (" +44 20 7946 0958 ", "ES", "+442079460958"),
])
def test_phones_become_e164(raw, region, expected):
    assert normalize("phone", raw, default_region=region) == expected


def test_the_default_region_is_us():
    assert DEFAULT_REGION == "US"
    assert normalize("phone", "(201) 555-0123") == "+12015550123"
    assert normalize("phone", "612 34 56 78") is None  # a Spanish national number needs region ES


@pytest.mark.parametrize("raw", [
    "", "abc", "12", "555-0123",  # too short for the US
    "+34 999 999 999",  # not a valid Spanish number
    "+999 1234567",  # no such country code
    "1" * 40,
])
def test_invalid_or_impossible_phones_are_none(raw):
    assert normalize("phone", raw, default_region="US") is None


def test_an_unknown_region_is_a_configuration_error():
    with pytest.raises(ValueError, match="unknown phone region"):
        normalize("phone", "612345678", default_region="XX")


# --- ids and custom types -------------------------------------------------------------

def test_ids_are_trimmed_and_keep_their_case():
    for t in ("user_id", "anonymous_id", "device_id"):
        assert normalize(t, "  AbC-1 ") == "AbC-1"
        assert normalize(t, " \n ") is None


def test_custom_types_are_accepted_only_when_declared():
    assert normalize("crm_id", " C-42 ", types=TYPES) == "C-42"
    assert normalize("shopify_customer_id", "7", types=TYPES) == "7"
    assert normalize("crm_id", "C-42") is None  # not declared in the default registry
    with pytest.raises(InvalidIdentifier, match="unknown identifier type"):
        check("crm_id", "C-42")


def test_the_registry_lists_builtin_then_custom_types():
    assert TYPES.all == ("user_id", "anonymous_id", "email", "phone", "device_id",
                         "crm_id", "loyalty_id", "shopify_customer_id")
    assert "email" in TYPES and "crm_id" in TYPES and "nope" not in TYPES


@pytest.mark.parametrize("names, message", [
    (["CRM"], "2 to 32 characters"),
    (["x"], "2 to 32 characters"),
    (["1crm"], "2 to 32 characters"),
    (["crm-id"], "2 to 32 characters"),
    (["a" * 33], "2 to 32 characters"),
    (["email"], "built-in"),
    (["crm_id", "crm_id"], "declared twice"),
])
def test_invalid_custom_type_names_are_refused(names, message):
    with pytest.raises(ValueError, match=message):
        IdentifierTypes(custom=names)


def test_the_length_limit():
    assert normalize("user_id", "u" * MAX_LENGTH) == "u" * MAX_LENGTH
    assert normalize("user_id", "  " + "u" * MAX_LENGTH + "  ") == "u" * MAX_LENGTH  # trimmed first
    assert normalize("user_id", "u" * (MAX_LENGTH + 1)) is None
    assert normalize("email", "a" * 600 + "@example.com") is None
    with pytest.raises(InvalidIdentifier, match="longer than 512"):
        check("crm_id", "c" * 513, types=TYPES)


def test_nul_characters_are_refused():
    assert normalize("user_id", "u\x001") is None


# --- identifiers_of with the new normalization ----------------------------------------

def test_explicit_and_trait_phones_are_normalized():
    ev = events_pb2.EventCollected(
        kind="identify", user_id="u1",
        traits_json=json.dumps({"phone": "(201) 555-0123", "email": " Ada@Example.com"}),
        context_json=json.dumps({"traits": {"phone": "+34 612 345 678"}}),
        identifiers=[identifier_pb2.Identifier(type="phone", value="+34 612 345 678")],
    )
    assert identifiers_of(ev) == [("user_id", "u1"), ("email", "ada@example.com"), ("phone", "+12015550123"),
                                  ("phone", "+34612345678")]


def test_the_default_region_is_a_parameter():
    ev = events_pb2.EventCollected(kind="identify", user_id="u1",
                                   identifiers=[identifier_pb2.Identifier(type="phone", value="612 34 56 78")])
    assert identifiers_of(ev) == [("user_id", "u1")]
    assert identifiers_of(ev, default_region="ES") == [("user_id", "u1"), ("phone", "+34612345678")]


def test_malformed_values_are_left_out_and_non_strings_ignored():
    ev = events_pb2.EventCollected(
        kind="identify", anonymous_id="a1",
        traits_json=json.dumps({"email": "nope", "phone": 612345678}),
        identifiers=[identifier_pb2.Identifier(type="device_id", value="d" * 513)],
    )
    assert identifiers_of(ev) == [("anonymous_id", "a1")]


def test_explicit_custom_identifiers_are_used_when_declared():
    ev = events_pb2.EventCollected(
        kind="identify", anonymous_id="a1",
        identifiers=[identifier_pb2.Identifier(type="loyalty_id", value=" L9 "),
                     identifier_pb2.Identifier(type="crm_id", value="C1"),
                     identifier_pb2.Identifier(type="email", value="X@Y.com")],
    )
    assert identifiers_of(ev, types=TYPES) == [
        ("email", "x@y.com"), ("anonymous_id", "a1"), ("crm_id", "C1"), ("loyalty_id", "L9")]
    assert identifiers_of(ev) == [("email", "x@y.com"), ("anonymous_id", "a1")]  # undeclared: left out


def test_an_event_with_only_undeclared_or_malformed_identifiers_is_poison():
    ev = events_pb2.EventCollected(
        kind="track", traits_json=json.dumps({"email": "nope"}),
        identifiers=[identifier_pb2.Identifier(type="crm_id", value="C1")])
    with pytest.raises(PoisonMessage):
        identifiers_of(ev)
