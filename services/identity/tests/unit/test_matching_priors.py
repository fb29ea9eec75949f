"""The prior λ per kind of pair (PRIOR_KINDS: how many of the two records carry an address) and
the λ estimate that leaves out the pairs a veto field forbids."""

import itertools
import math
import random

import numpy as np
import pytest

from cdp_core.errors import InvalidArgument
from cdp_identity.matching import (
    FIELDS,
    MISSING,
    PRIOR_KINDS,
    MatchModel,
    MatchRecord,
    _em,
    best_matches,
    prior_kind,
)

FIRST = ["ana", "lucia", "maria", "carmen", "laura", "jose", "pablo", "david", "juan", "sergio", "elena", "irene",
         "raul", "ivan", "hugo", "mario", "marta", "sara", "pedro", "diego"]
LAST = ["garcia", "lopez", "ruiz", "diaz", "moreno", "munoz", "alonso", "romero", "navarro", "torres", "gil",
        "serrano", "blanco", "molina", "castro", "ortiz", "rubio", "marin", "sanz", "cano"]
STREETS = ["calle mayor", "calle del sol", "avenida de america", "calle serrano", "plaza de espana", "calle nueva"]

RECEIPT = MatchRecord(first_name="lucia", last_name="moreno", postal_code="28045")
CONTACT = MatchRecord(first_name="lucia", last_name="moreno diaz", birthday="1980-02-03",
                      street="calle mayor 12 3 a", city="madrid", postal_code="28045", phone="+34612345678")


def log_odds(p: float) -> float:
    return math.log2(p) - math.log2(1 - p)


def test_pair_kind_counts_the_records_with_a_street():
    assert PRIOR_KINDS[prior_kind(RECEIPT, RECEIPT)] == "none"
    assert PRIOR_KINDS[prior_kind(RECEIPT, CONTACT)] == PRIOR_KINDS[prior_kind(CONTACT, RECEIPT)] == "one"
    assert PRIOR_KINDS[prior_kind(CONTACT, CONTACT)] == "both"


def test_score_uses_the_prior_of_the_pairs_kind_with_term_frequencies():
    m = MatchModel.from_dict({"prior": 1e-4, "priors": {"none": 1e-3, "both": 1e-5}})
    tf = m.term_frequencies(min_records=0)
    other = MatchRecord(first_name="lucia", last_name="moreno", postal_code="28045", email_local="lucia.m")
    for a, b, lam in ((RECEIPT, other, 1e-3), (RECEIPT, CONTACT, 1e-4), (CONTACT, CONTACT, 1e-5)):
        s = m.score(a, b, tf)
        assert m.prior_weight_of(a, b) == pytest.approx(log_odds(lam))
        assert s.weight == pytest.approx(log_odds(lam) + sum(c.weight for c in s.comparisons))
        assert m.weight(a, b, tf) == pytest.approx(s.weight)
    # the same comparisons weigh 10 times the odds between two receipts as with the single prior
    single = MatchModel.from_dict({"prior": 1e-4})
    assert m.score(RECEIPT, other, tf).weight - single.score(RECEIPT, other, tf).weight == pytest.approx(
        log_odds(1e-3) - log_odds(1e-4))
    # a kind without its own λ keeps the single prior
    assert m.score(RECEIPT, CONTACT, tf).weight == pytest.approx(single.score(RECEIPT, CONTACT, tf).weight)


def test_without_term_frequencies_every_pair_has_the_single_prior():
    m = MatchModel.from_dict({"prior": 1e-4, "priors": {"none": 1e-3, "one": 1e-3, "both": 1e-5}})
    single = MatchModel.from_dict({"prior": 1e-4})
    for a, b in ((RECEIPT, RECEIPT), (RECEIPT, CONTACT), (CONTACT, CONTACT)):
        assert m.prior_weight_of(a, b, term_frequencies=False) == pytest.approx(log_odds(1e-4))
        assert m.score(a, b).weight == pytest.approx(single.score(a, b).weight)
        assert m.weight(a, b) == pytest.approx(single.weight(a, b))


def test_kind_prior_decides_a_merge_that_the_single_prior_does_not():
    a = MatchRecord(first_name="lucia", last_name="moreno", postal_code="28045")
    b = MatchRecord(first_name="lucia", last_name="moreno", postal_code="28046")  # a neighbouring postcode
    single = MatchModel.from_dict({"prior": 2e-5})
    kinds = MatchModel.from_dict({"prior": 2e-5, "priors": {"none": 5e-3}})
    assert best_matches(single, a, [("p", b)], tf=single.term_frequencies(min_records=0))[0] == []
    matches, _ = best_matches(kinds, a, [("p", b)], tf=kinds.term_frequencies(min_records=0))
    assert [c for c, _ in matches] == ["p"]
    assert best_matches(kinds, a, [("p", b)])[0] == []  # without term frequencies: the single prior


def test_kind_priors_round_trip_and_are_validated():
    m = MatchModel.from_dict({"priors": {"none": 5e-4, "one": 6e-5, "both": 2e-5}})
    assert m.priors == {"none": 5e-4, "one": 6e-5, "both": 2e-5}
    assert MatchModel.from_dict(m.to_dict()) == m
    assert "priors" not in MatchModel.default().to_dict()  # a model without them saves as before
    for bad, field in (({"priors": {"receipts": 1e-3}}, "priors.receipts"), ({"priors": {"none": 0}}, "priors.none"),
                       ({"priors": {"one": 1.0}}, "priors.one"), ({"priors": {"both": "x"}}, "priors.both"),
                       ({"priors": {"none": True}}, "priors.none"), ({"priors": [1e-3]}, "priors")):
        with pytest.raises(InvalidArgument) as e:
            MatchModel.from_dict(bad)
        assert e.value.field == field


def _shoppers(n_people: int, seed: int) -> tuple[list[MatchRecord], list[int]]:
    """Each person has a CRM contact (with a street), one in ten a duplicate; a third of them also
    leave two to four till receipts (first name, surname, postcode only)."""
    r = random.Random(seed)
    recs, who = [], []
    for p in range(n_people):
        first, last, last2 = r.choice(FIRST), r.choice(LAST), r.choice(LAST)
        pc = f"{r.choice(['08', '28', '46'])}{r.randint(1, 40):03d}"
        street = f"{r.choice(STREETS)} {r.randint(1, 150)} {r.randint(1, 8)} {r.choice('abcd')}"
        bd = f"{r.randint(1950, 2000)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        phone = f"+346{r.randint(0, 99_999_999):08d}"
        for _ in range(1 + (r.random() < 0.1)):
            recs.append(MatchRecord(first_name=first, last_name=f"{last} {last2}",
                                    birthday=bd if r.random() < 0.7 else "", street=street, city="x", postal_code=pc,
                                    phone=phone if r.random() < 0.8 else "",
                                    email_local=f"{first}.{last}{p}" if r.random() < 0.8 else ""))
            who.append(p)
        if r.random() < 1 / 3:
            for _ in range(r.randint(2, 4)):
                recs.append(MatchRecord(first_name=first, last_name=last, postal_code=pc,
                                        phone=phone if r.random() < 0.3 else ""))
                who.append(p)
    return recs, who


def test_estimate_learns_a_larger_prior_between_receipts_than_between_contacts():
    recs, who = _shoppers(1500, seed=4)
    model = MatchModel.estimate(recs, seed=1)
    assert set(model.priors) == set(PRIOR_KINDS)
    true = dict.fromkeys(PRIOR_KINDS, 0)
    total = dict.fromkeys(PRIOR_KINDS, 0)
    for i, j in itertools.combinations(range(len(recs)), 2):
        k = PRIOR_KINDS[prior_kind(recs[i], recs[j])]
        total[k] += 1
        true[k] += who[i] == who[j]
    for k in PRIOR_KINDS:  # each kind's λ within a factor of 3 of the truth
        assert 1 / 3 < model.priors[k] / (true[k] / total[k]) < 3, (k, model.priors[k], true[k] / total[k])
    assert model.priors["none"] > 10 * model.priors["both"]
    assert MatchModel.from_dict(model.to_dict()).priors == model.priors


def test_em_prior_leaves_out_patterns_taken_as_non_matches():
    # relatives sharing a family e-mail: the first names differ (a veto) but the e-mail agrees, which
    # alone would make EM count them as matches and inflate λ
    d = MatchModel.default()
    m = [np.array(d.params[f].m) for f in FIELDS]
    u = [np.array(d.params[f].u) for f in FIELDS]
    fi, ei = FIELDS.index("first_name"), FIELDS.index("email_local")
    rows = []
    for first, email in ((0, 0), (3, 0), (2, 2)):  # the same person; relatives; strangers
        row = [MISSING] * len(FIELDS)
        row[fi], row[ei] = first, email
        rows.append(row)
    patterns = np.array(rows, dtype=np.int8)
    counts = np.array([10.0, 40.0, 50.0])
    _, lam = _em(patterns, counts, [x.copy() for x in m], u, list(range(len(FIELDS))), [], max_iter=50, tol=1e-9)
    _, lam_never = _em(patterns, counts, [x.copy() for x in m], u, list(range(len(FIELDS))), [], max_iter=50,
                       tol=1e-9, never=np.array([False, True, False]))
    assert lam > 0.45  # the relatives counted as matches
    assert lam_never < 0.15  # about the ten pairs of one person only


def test_kind_priors_in_the_identity_configuration():
    from cdp_identity.config import IdentityConfig
    from cdp_identity.rules import RulesError

    cfg = IdentityConfig.parse("matching: {term_frequencies: true, model: {priors: {none: 0.0005, both: 0.00002}}}")
    assert MatchModel.from_dict(cfg.matching.model).priors == {"none": 5e-4, "both": 2e-5}
    with pytest.raises(RulesError) as e:
        IdentityConfig.parse("matching: {model: {priors: {receipts: 0.001}}}")
    assert e.value.field == "matching.model.priors.receipts"


def test_too_few_counted_records_weigh_nothing():
    """Below TF_MIN_RECORDS a table adjusts no weight and pairs take the single prior: a handful
    of counts would swing the scores."""
    from cdp_identity.matching import TF_MIN_RECORDS, MatchModel, record_from_traits

    model = MatchModel.from_dict({**MatchModel.default().to_dict(), "priors": {"none": 0.01}})
    a = record_from_traits({"firstName": "Ana", "lastName": "Zubizarreta", "address": {"postalCode": "28013"}})
    b = record_from_traits({"firstName": "Ana", "lastName": "Zubizarreta", "address": {"postalCode": "28013"}})
    few = model.term_frequencies()
    few.add(a)
    assert not few.weighing
    assert model.weight(a, b, few) == model.weight(a, b)  # as without a table
    many = model.term_frequencies(min_records=1)
    many.add(a)
    assert many.weighing and model.weight(a, b, many) != model.weight(a, b)
    assert TF_MIN_RECORDS >= 100
