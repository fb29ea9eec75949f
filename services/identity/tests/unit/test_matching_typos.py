"""Typos in names and postcodes (two typos of one value, a neighbouring key's digit, nicknames),
the names' close weight with term frequencies, and a record between two profiles of one person."""

import pytest

import cdp_identity.matching as matching
from cdp_identity.matching import (
    FIELDS,
    LEVELS,
    MatchModel,
    MatchRecord,
    TermFrequencies,
    Thresholds,
    best_matches,
    compare_levels,
    record_from_traits,
    typo_source,
)


def rec(**traits) -> MatchRecord:
    r = record_from_traits(traits)
    assert r is not None
    return r


def _levels(a: MatchRecord, b: MatchRecord, tf: TermFrequencies | None = None) -> dict[str, str]:
    return {f: ("missing" if lv == -1 else LEVELS[f][lv]) for f, lv in zip(FIELDS, compare_levels(a, b, tf),
                                                                              strict=True)}


def _counts(*records: tuple[str, str, str, int]) -> TermFrequencies:
    tf = MatchModel.default().term_frequencies(min_records=0)
    for first, last, pc, n in records:
        for _ in range(n):
            tf.add(rec(firstName=first, lastName=last, address={"postalCode": pc}))
    return tf


def test_two_typos_of_one_common_surname_are_close():
    tf = _counts(("Eva", "Calvo", "28005", 6), ("Ana", "Ruiz", "28040", 6))
    a = rec(firstName="Alberto", lastName="Cavo", address={"postalCode": "28046"})
    b = rec(firstName="Alberto", lastName="Callvo", address={"postalCode": "28046"})
    assert _levels(a, b)["last_name"] == "similar"  # no counts: no telling
    assert typo_source(tf, "last_name", "cavo", "callvo") == "calvo"
    assert _levels(a, b, tf)["last_name"] == "close"  # both mistyped calvo
    # weighed as calvo is, not as the two rare spellings would be
    one_typo = MatchModel.default().score(a, rec(firstName="Alberto", lastName="Calvo",
                                                 address={"postalCode": "28046"}), tf)
    two_typos = MatchModel.default().score(a, b, tf)
    assert two_typos.comparisons[1].weight == pytest.approx(one_typo.comparisons[1].weight)
    # the surnames of a CRM contact: the first one is compared, the second must agree
    crm = rec(firstName="Alberto", lastName="Callvo Gil", address={"postalCode": "28046"})
    assert _levels(a, crm, tf)["last_name"] == "close"
    crm2 = rec(firstName="Alberto", lastName="Callvo Gomes", address={"postalCode": "28046"})
    assert _levels(rec(firstName="Alberto", lastName="Cavo Gomez", address={"postalCode": "28046"}), crm2,
                   tf)["last_name"] == "close"  # the second surname a keystroke off too
    assert _levels(rec(firstName="Alberto", lastName="Cavo Martin", address={"postalCode": "28046"}),
                   rec(firstName="Alberto", lastName="Callvo Martos", address={"postalCode": "28046"}),
                   tf)["last_name"] == "similar"  # the second surnames differ: cousins
    # no common value both are a keystroke from: two names, not two typos
    assert _levels(rec(firstName="Ana", lastName="Ruis", address={"postalCode": "28040"}),
                   rec(firstName="Ana", lastName="Rubio", address={"postalCode": "28040"}), tf)["last_name"] != "close"


def test_the_common_value_must_be_much_commoner_than_both_spellings():
    tf = _counts(("Eva", "Calvo", "28005", 3), ("Eva", "Cavo", "28005", 2))
    assert typo_source(tf, "last_name", "cavo", "callvo") is None  # cavo is a name of its own here
    tf = _counts(("Eva", "Calvo", "28005", 6), ("Eva", "Cavo", "28005", 1))
    assert typo_source(tf, "last_name", "cavo", "callvo") == "calvo"
    tf = _counts(("Eva", "Calvo", "28005", 1))
    assert typo_source(tf, "last_name", "cavo", "callvo") is None  # one record is no dictionary


def test_two_typos_of_one_common_first_name_and_postcode():
    tf = _counts(("Valeria", "Lopez", "28005", 6))
    a = rec(firstName="Vaeria", lastName="López", address={"postalCode": "28105"})
    b = rec(firstName="Valrria", lastName="López", address={"postalCode": "28006"})
    assert _levels(a, b)["first_name"] == "similar"
    assert _levels(a, b)["postal_code"] == "different"
    lv = _levels(a, b, tf)
    assert lv["first_name"] == "close" and lv["postal_code"] == "typo"  # 28005, mistyped twice
    # another province is never one postcode mistyped
    assert _levels(rec(firstName="Ana", lastName="Gil", address={"postalCode": "28105"}),
                   rec(firstName="Ana", lastName="Gil", address={"postalCode": "29005"}), tf)["postal_code"] == "different"


def test_postcode_digit_of_a_neighbouring_key():
    def lv(a: str, b: str) -> str:
        return _levels(rec(firstName="Ana", lastName="Ruiz", address={"postalCode": a}),
                       rec(firstName="Ana", lastName="Ruiz", address={"postalCode": b}))["postal_code"]

    assert lv("28015", "28016") == "key"  # the number row
    assert lv("28015", "28025") == "key"
    assert lv("28019", "28010") == "key"  # 9 and 0 sit side by side
    assert lv("28014", "28011") == "key"  # a keypad's column
    assert lv("28015", "28019") == "close"  # one digit, not a neighbouring key
    assert lv("28015", "28051") == "close"  # two digits swapped: one keystroke
    assert lv("28015", "28105") == "close"
    assert lv("28015", "28106") == "different"  # two digits
    w = MatchModel.default().weights()["postal_code"]
    assert w["exact"] > w["typo"] > w["key"] > w["close"] > w["different"]


def test_em_learns_the_neighbouring_key_level():
    """Postcodes mistyped by a neighbouring key: EM weighs `key` above `close`."""
    import random

    r = random.Random(4)
    firsts = ["ana", "lucia", "maria", "laura", "jose", "pablo", "david", "juan", "elena", "irene", "hugo", "sara"]
    lasts = ["garcia", "lopez", "ruiz", "diaz", "moreno", "alonso", "romero", "navarro", "torres", "gil"]
    recs = []
    for p in range(1500):
        first, last, pc = r.choice(firsts), r.choice(lasts), f"28{r.randint(1, 80):03d}"
        phone = f"+346{r.randint(0, 99_999_999):08d}"
        for _ in range(1 + (r.random() < 0.5)):
            d = int(pc[4])
            typo = pc[:4] + str((d + 1) % 10) if r.random() < 0.15 else pc
            recs.append(MatchRecord(first_name=first, last_name=last, postal_code=typo,
                                    phone=phone if r.random() < 0.7 else "", birthday=f"19{60 + p % 40}-01-0{1 + p % 9}"))
    w = MatchModel.estimate(recs, seed=1).weights()["postal_code"]
    assert w["key"] > w["close"] + 1, w


def test_a_nickname_of_another_name_is_not_a_typo():
    def lv(a: str, b: str) -> str:
        return _levels(rec(firstName=a, lastName="Rodríguez", phone="612345678"),
                       rec(firstName=b, lastName="Rodríguez", phone="612345678"))["first_name"]

    assert lv("Joe", "José") == "similar"  # joe is joseph's, not a typo of josé
    assert lv("Pepe", "José") == "close"  # pepe is josé's
    assert lv("Ivan", "Ian") == "close"  # a letter dropped


def test_close_names_weigh_as_measured_only_with_term_frequencies():
    # a model whose close first name weighs more than an exact one (as EM measures on tills' typos)
    model = MatchModel.from_dict({"fields": {"first_name": {
        "m": {"exact": 0.7, "close": 0.29, "similar": 0.005, "different": 0.005},
        "u": {"exact": 0.012, "close": 0.0013, "similar": 0.007, "different": 0.9797}}}})
    aware, plain = model.weights()["first_name"], model.weights(typo_aware=False)["first_name"]
    assert aware["close"] > aware["exact"]
    assert plain["close"] <= plain["exact"]  # without counts a close name may be another name
    a = rec(firstName="Sandra", lastName="Suárez", address={"postalCode": "28030"})
    b = rec(firstName="Sndra", lastName="Suárez", address={"postalCode": "28030"})
    without = {c.field: c for c in model.score(a, b).comparisons}["first_name"]
    assert without.level == "close" and without.weight == pytest.approx(plain["close"], abs=1e-3)
    tf = model.term_frequencies(min_records=0)
    tf.add(a)
    levels = compare_levels(a, b, tf)
    adj = model.tf_adjustments(a, b, levels, tf)[FIELDS.index("first_name")]
    with_tf = {c.field: c for c in model.score(a, b, tf).comparisons}["first_name"]
    assert with_tf.weight == pytest.approx(aware["close"] + adj, abs=1e-3)


def test_a_record_between_two_profiles_of_one_person_joins_the_likelier():
    model = MatchModel.default()
    crm = rec(firstName="Alba", lastName="Calvo González", birthday="1971-03-02",
              address={"street": "Avenida de Andalucía 176", "postalCode": "28006", "city": "Madrid"})
    receipt = rec(firstName="Alba", lastName="Calvo", address={"postalCode": "28006"})  # not merged yet
    new = rec(firstName="Alba", lastName="Calvo", address={"postalCode": "28006"})
    assert model.score(crm, receipt).probability > 0.99  # the two profiles are likely one person
    matches, review = best_matches(model, new, [("crm", crm), ("receipt", receipt)], Thresholds())
    assert [c for c, _ in matches] == ["crm"] and matches[0][1].posterior > Thresholds().match
    assert [c for c, _ in review] == ["receipt"] and review[0][1].posterior < 0.5  # only one merges
    # without the shared posterior the two split it and neither merges
    alone = matching.SHARED_MIN_POSTERIOR
    try:
        matching.SHARED_MIN_POSTERIOR = 2.0
        assert best_matches(model, new, [("crm", crm), ("receipt", receipt)], Thresholds())[0] == []
    finally:
        matching.SHARED_MIN_POSTERIOR = alone
    # namesakes a veto field tells apart (their birthdays) share nothing: neither merges
    namesake = rec(firstName="Alba", lastName="Calvo Ruiz", birthday="1999-10-20", address={"postalCode": "28006"})
    assert model.score(crm, namesake).vetoed == ("birthday",)
    matches, review = best_matches(model, new, [("crm", crm), ("other", namesake)], Thresholds())
    assert matches == [] and all(s.posterior < 0.5 for _, s in review)
