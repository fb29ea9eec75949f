import random

import pytest

from cdp_core.errors import InvalidArgument
from cdp_identity.matching import (
    LEVELS,
    MatchModel,
    MatchRecord,
    Thresholds,
    best_matches,
    blocking_keys,
    compare_levels,
    record_from_traits,
)

CRM = {"firstName": "José", "lastName": "García López", "birthday": "1980-04-12", "phone": "612 34 56 78",
       "email": "Jose.Garcia@gmail.com",
       "address": {"street": "Calle Mayor 12, 3ºA", "postalCode": "08001", "city": "Barcelona", "country": "ES"}}


def rec(**traits) -> MatchRecord:
    r = record_from_traits(traits)
    assert r is not None
    return r


def test_traits_are_normalized_nested_or_flattened():
    a = rec(**CRM)
    assert a == MatchRecord(first_name="jose", last_name="garcia lopez", birthday="1980-04-12",
                            street="calle mayor 12 3 a", city="barcelona", postal_code="08001", state="",
                            phone="+34612345678", email_local="jose.garcia")
    flat = {k: v for k, v in CRM.items() if k != "address"}
    flat.update({"address.street": "Calle Mayor 12, 3ºA", "address.postalCode": "08001",
                 "address.city": "Barcelona"})
    assert record_from_traits(flat) == a
    assert MatchRecord.from_dict(a.to_dict()) == a


def test_placeholders_and_lost_leading_zero():
    r = rec(firstName="ANA", lastName="RUIZ", address={"postalCode": "8001"}, email="test@test.com",
            phone="+34600000000")
    assert (r.postal_code, r.email_local, r.phone) == ("08001", "", "")
    assert rec(firstName="Ana", lastName="Ruiz", birthday="12/04/1980").birthday == "1980-04-12"


def test_too_little_to_match_is_none():
    assert record_from_traits({"lastName": "García", "firstName": "Ana"}) is None  # surname + one field
    assert record_from_traits({"firstName": "Ana", "address": {"postalCode": "08001"}, "phone": "612345678"}) is None
    assert record_from_traits({"email": "x@y.com"}) is None
    assert record_from_traits("not a mapping") is None  # type: ignore[arg-type]
    assert record_from_traits({"lastName": "García", "firstName": "Ana", "address": {"postalCode": "08001"}})


def test_typod_names_still_match():
    model = MatchModel.default()
    crm = rec(**CRM)
    for first, last in (("JOSE", "GARCIA"), ("Pepe", "García"), ("Jsoe", "Gracia"), ("José", "Garcíia")):
        pos = rec(firstName=first, lastName=last, address={"postalCode": "08001"})
        s = model.score(crm, pos)
        assert s.probability >= Thresholds().match, (first, last, s)
        assert not s.vetoed


def test_same_name_elsewhere_does_not_match():
    model = MatchModel.default()
    crm = rec(**CRM)
    other = rec(firstName="José", lastName="García", address={"postalCode": "28014"})
    assert model.score(crm, other).probability < Thresholds().review


def test_household_member_is_vetoed_even_with_a_family_email():
    model = MatchModel.default()
    a = rec(**{**CRM, "email": "garciafamilia7@gmail.com"})
    b = rec(**{**CRM, "firstName": "Lucía", "birthday": "1983-02-01", "email": "garciafamilia7@gmail.com",
               "phone": ""})
    s = model.score(a, b)
    assert s.vetoed == ("first_name", "birthday")
    matches, _review = best_matches(model, a, [("p1", b)], Thresholds())
    assert matches == []


def test_missing_fields_are_neutral():
    model = MatchModel.default()
    a = rec(firstName="Ana", lastName="Ruiz", address={"postalCode": "08001"})
    b = rec(firstName="Ana", lastName="Ruiz", address={"postalCode": "08001"}, phone="612345678")
    c = rec(firstName="Ana", lastName="Ruiz", address={"postalCode": "08001"}, birthday="1990-01-01")
    assert model.score(a, b).weight == pytest.approx(model.score(a, c).weight)
    comps = {x.field: x for x in model.score(a, b).comparisons}
    assert comps["phone"].level == "missing" and comps["phone"].weight == 0.0
    assert compare_levels(a, b)[-2] == -1


def test_address_fields_count_once():
    model = MatchModel.default()
    a, b = rec(**CRM), rec(**CRM)
    comps = {x.field: x for x in model.score(a, b).comparisons}
    agreeing = [f for f in ("street", "postal_code", "city") if comps[f].weight > 0]
    assert agreeing == ["street"]  # the strongest one; postcode and city agree too but add nothing
    assert model.score(a, b).weight == pytest.approx(
        model.prior_weight + sum(x.weight for x in model.score(a, b).comparisons))


def test_score_is_symmetric():
    model = MatchModel.default()
    a = rec(**CRM)
    b = rec(firstName="Pepe", lastName="Gracia", address={"postalCode": "8011"}, email="jose.garcia@gmial.com")
    assert model.score(a, b).weight == pytest.approx(model.score(b, a).weight)


def test_blocking_keys_survive_a_one_letter_typo():
    crm = rec(**CRM)
    keys = set(blocking_keys(crm))
    for last in ("Gracia", "Garcai", "Garcíia", "Gaecia", "Garca"):
        pos = rec(firstName="José", lastName=last, address={"postalCode": "08001"})
        assert keys & set(blocking_keys(pos)), last
    # a wrong postcode digit: the full name still shares a key
    assert keys & set(blocking_keys(rec(firstName="Jose", lastName="Garcia", address={"postalCode": "08011"})))
    # a nickname is keyed as the full name
    assert keys & set(blocking_keys(rec(firstName="Pepe", lastName="Garcia", address={"postalCode": "08011"})))


def test_best_matches_ranks_and_splits_review():
    model = MatchModel.default()
    q = rec(firstName="Ana", lastName="Ruiz", address={"postalCode": "08001"}, phone="612345678")
    strong = rec(**{**CRM, "firstName": "Ana", "lastName": "Ruiz", "phone": "612345678"})
    weak = rec(firstName="Ana", lastName="Ruiz", address={"postalCode": "08011"})
    none = rec(firstName="Pedro", lastName="Ruiz", address={"postalCode": "41001"})
    matches, review = best_matches(model, q, [("b", weak), ("a", strong), ("c", none), ("a", weak)],
                                   Thresholds(match=0.99, review=0.01))
    assert [c for c, _ in matches] == ["a"]
    assert [c for c, _ in review] == ["b"]


# --- configuration ------------------------------------------------------------------------

def test_model_round_trips_and_partial_config_keeps_defaults():
    d = MatchModel.default().to_dict()
    assert MatchModel.from_dict(d) == MatchModel.default()
    m = MatchModel.from_dict({"prior": 0.001, "fields": {"phone": {"m": {"exact": 0.9, "close": 0.05, "different": 0.05},
                                                                   "u": {"exact": 0.001, "close": 0.001,
                                                                         "different": 0.998}}}})
    assert m.prior == 0.001
    assert m.params["first_name"] == MatchModel.default().params["first_name"]


@pytest.mark.parametrize("config, field", [
    ({"prior": 0}, "prior"),
    ({"prior": "x"}, "prior"),
    ({"priors": 0.1}, "priors"),
    ({"fields": {"shoe_size": {}}}, "fields.shoe_size"),
    ({"fields": {"phone": {"m": {"exact": 1.0}}}}, "fields.phone.m.close"),
    ({"fields": {"phone": {"m": {"exact": 0.9, "close": 0.05, "different": 0.05}}}}, "fields.phone.u"),
    ({"fields": {"phone": {"m": {"exact": 0.9, "close": 0.05, "different": 0.05, "fuzzy": 0.1},
                           "u": {}}}}, "fields.phone.m.fuzzy"),
    ({"fields": {"phone": {"m": {"exact": 0.9, "close": -0.05, "different": 0.15},
                           "u": {}}}}, "fields.phone.m.close"),
    ({"fields": {"phone": {"m": {"exact": 0.5, "close": 0.1, "different": 0.1},
                           "u": {}}}}, "fields.phone.m"),
    ({"vetoes": ["first_name", "eye_colour"]}, "vetoes[1]"),
])
def test_bad_config_names_the_field(config, field):
    with pytest.raises(InvalidArgument) as e:
        MatchModel.from_dict(config)
    assert e.value.field == field


def test_bad_thresholds_name_the_field():
    with pytest.raises(InvalidArgument) as e:
        Thresholds(match=1.5)
    assert e.value.field == "thresholds.match"
    with pytest.raises(InvalidArgument) as e:
        Thresholds(match=0.9, review=0.95)
    assert e.value.field == "thresholds.review"
    with pytest.raises(InvalidArgument) as e:
        Thresholds.from_dict({"merge": 0.9})
    assert e.value.field == "thresholds.merge"


# --- estimation ---------------------------------------------------------------------------

FIRST = ["ana", "lucia", "maria", "carmen", "laura", "jose", "pablo", "david", "juan", "sergio", "elena", "irene",
         "raul", "ivan", "hugo", "mario", "marta", "sara", "pedro", "diego"]
LAST = ["garcia", "lopez", "ruiz", "diaz", "moreno", "munoz", "alonso", "romero", "navarro", "torres", "gil",
        "serrano", "blanco", "molina", "castro", "ortiz", "rubio", "marin", "sanz", "cano"]


def _typo(s: str, r: random.Random) -> str:
    if len(s) < 4 or r.random() < 0.7:
        return s
    k = r.randrange(1, len(s) - 1)
    return s[:k] + s[k + 1] + s[k] + s[k + 2:]


def _synthetic(n_people: int, seed: int) -> tuple[list[MatchRecord], list[int]]:
    r = random.Random(seed)
    recs, who = [], []
    for p in range(n_people):
        first, last = r.choice(FIRST), r.choice(LAST)
        pc = f"{r.choice(['08', '28', '46'])}{r.randint(1, 40):03d}"
        bd = f"{r.randint(1950, 2000)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        phone = f"+346{r.randint(0, 99_999_999):08d}"
        email = f"{first}.{last}{p}"
        for _ in range(1 + (r.random() < 0.5)):
            recs.append(MatchRecord(first_name=_typo(first, r), last_name=_typo(last, r),
                                    birthday=bd if r.random() < 0.7 else "", postal_code=pc,
                                    phone=phone if r.random() < 0.6 else "",
                                    email_local=email if r.random() < 0.5 else ""))
            who.append(p)
    return recs, who


def test_em_recovers_the_ordering_of_m_and_u():
    recs, _ = _synthetic(1500, seed=3)
    model = MatchModel.estimate(recs, seed=1)
    w = model.weights()
    for f in ("first_name", "last_name", "birthday", "postal_code", "phone", "email_local"):
        p = model.params[f]
        assert p.m[0] > p.u[0], f  # agreeing is likelier among matches
        assert p.m[-1] < p.u[-1], f  # disagreeing likelier among non-matches
        assert w[f]["exact"] > 0 > w[f][LEVELS[f][-1]], f
        assert all(a >= b for a, b in zip(list(w[f].values()), list(w[f].values())[1:], strict=False)), f
    # the prior: about 750 matching pairs among ~2250 records
    assert 0.2 < model.prior * len(recs) * (len(recs) - 1) / 2 / 750 < 5
    assert MatchModel.estimate(recs, seed=1) == model  # deterministic


def test_em_model_separates_synthetic_people():
    recs, who = _synthetic(800, seed=5)
    model = MatchModel.estimate(recs, seed=2)
    th = Thresholds()
    tp = fp = 0
    for i in range(len(recs)):
        for j in range(i + 1, len(recs)):
            if set(blocking_keys(recs[i])) & set(blocking_keys(recs[j])):
                s = model.score(recs[i], recs[j])
                if s.probability >= th.match and not s.vetoed:
                    tp += who[i] == who[j]
                    fp += who[i] != who[j]
    assert tp > 0 and fp / (tp + fp) < 0.01


def test_estimate_rejects_bad_arguments_and_handles_tiny_input():
    with pytest.raises(InvalidArgument) as e:
        MatchModel.estimate([], max_iter=0)
    assert e.value.field == "max_iter"
    assert MatchModel.estimate([]) == MatchModel.default()


# --- on the simulator's world -------------------------------------------------------------

def test_offline_accuracy_on_a_simulated_world(tmp_path):
    pytest.importorskip("cdp_sim")
    from cdp_bench.identity_accuracy import evaluate_world

    out = evaluate_world(people=1500, days=45, seed=2)
    # measured: EM precision 1.0, recall 0.965; default precision 1.0, recall 0.930 (57 true pairs)
    for name in ("em", "default"):
        run = out[name]
        assert run["true_pairs"] >= 40
        assert run["precision"] >= 0.99, (name, run)
        assert run["recall"] >= 0.88, (name, run)
