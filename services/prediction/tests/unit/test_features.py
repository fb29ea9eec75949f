"""Point-in-time features and labels: what a feature sees is only what happened before T."""

import numpy as np
import pytest

from cdp_prediction.features import (
    CART_ADD,
    ITEM,
    ORDER,
    PAGE,
    PRODUCT_VIEW,
    STORE,
    WEB,
    History,
    Observation,
    attribute_affinities,
    features_at,
    labels_at,
    observe,
)

T = 20_000.0


def hist(rows):
    return History.from_observations(rows)


def test_observe_reads_orders_products_and_channels():
    order = observe("track", "Order Completed", T, {
        "total": 75.16, "coupon": "VIP20", "discount": 18.79,
        "products": [{"category": "Bags", "brand": "Olivo", "variant": "Khaki / One Size", "price": 93.95}]},
        {"library": {"name": "analytics.js"}})
    assert [o.code for o in order] == [ORDER, ITEM]
    assert order[0].value == pytest.approx(75.16) and order[0].discount and order[0].channel == WEB
    assert (order[1].category, order[1].brand, order[1].colour, order[1].size, order[1].price_band) == \
        ("Bags", "Olivo", "Khaki", "One Size", "premium")
    assert observe("track", "Order Completed", T, {"total": "12.5"}, {}, "pos")[0].channel == STORE
    assert observe("screen", "Home", T, {}, {"app": {"name": "Moda"}})[0].code == PAGE
    # bad values do not break the reader
    assert observe("track", "Order Completed", T, {"total": "n/a", "products": "x"}, None)[0].value == 0.0


def test_features_count_recency_frequency_and_intervals():
    rows = [("a", Observation(T - 50, ORDER, 10.0)), ("a", Observation(T - 30, ORDER, 30.0, True)),
            ("a", Observation(T - 10, ORDER, 20.0)), ("a", Observation(T - 5, PRODUCT_VIEW)),
            ("b", Observation(T - 3, PAGE)), ("b", Observation(T - 3 + 1 / 1440, PAGE)),  # one session
            ("b", Observation(T - 1, PAGE))]  # a second session
    f = features_at(hist(rows), T)
    a, b = 0, 1
    assert f.column("orders")[a] == 3 and f.column("revenue")[a] == 60
    assert f.column("days_since_last_order")[a] == pytest.approx(10)
    assert f.column("ipi_mean")[a] == pytest.approx(20) and f.column("ipi_std")[a] == pytest.approx(0)
    assert f.column("discount_order_share")[a] == pytest.approx(1 / 3)
    assert f.column("orders_30d")[a] == 2 and f.column("orders_7d")[a] == 0
    assert np.isnan(f.column("days_since_last_order")[b]) and f.column("sessions")[b] == 2
    assert f.btyd["x"][a] == 2 and f.btyd["t_x"][a] == pytest.approx(40) and f.btyd["T"][a] == pytest.approx(50)


def test_no_leakage_events_at_or_after_the_cutoff_change_nothing():
    rng = np.random.default_rng(3)
    before = [(f"p{i % 40}", Observation(T - rng.uniform(0, 120), int(rng.choice([PAGE, PRODUCT_VIEW, CART_ADD, ORDER])),
                                          float(rng.uniform(5, 90)), bool(rng.random() < 0.2), int(rng.integers(0, 3)),
                                          str(rng.choice(["Bags", "Shoes", "Dresses"])))) for i in range(800)]
    after = [(f"p{i % 60}", Observation(T + rng.uniform(0, 30), ORDER, 500.0, True, STORE, "Kids")) for i in range(300)]
    after.append(("p0", Observation(T, ORDER, 999.0)))  # exactly at the cutoff: already the future
    h_before, h_all = hist(before), hist(before + after)
    fa, fb = features_at(h_all, T), features_at(h_before, T)
    ids_a = [h_all.profiles[r] for r in fa.rows]
    ids_b = [h_before.profiles[r] for r in fb.rows]
    assert ids_a == ids_b  # profiles first seen after T are not scored as of T
    np.testing.assert_array_equal(fa.X, fb.X)  # NaNs in the same places too
    for k in fa.btyd:
        np.testing.assert_array_equal(fa.btyd[k], fb.btyd[k])
    aa, ab = attribute_affinities(h_all, T, fa.rows), attribute_affinities(h_before, T, fb.rows)
    for attr in aa:
        assert [h_all.vocab[attr][v] if v >= 0 else None for v in aa[attr][0]] == \
            [h_before.vocab[attr][v] if v >= 0 else None for v in ab[attr][0]]
    # ...while the labels see them (for the 40 profiles known before T: 200 orders + the one at T)
    lab = labels_at(h_all, T, 30, fa.rows)
    assert lab.orders.sum() == 201 and lab.revenue.sum() == pytest.approx(200 * 500 + 999)


def test_labels_window_churn_and_discount():
    rows = [("a", Observation(T - 5, ORDER, 10.0)), ("a", Observation(T + 2, ORDER, 40.0, True)),
            ("a", Observation(T + 40, ORDER, 1.0)),  # after the window
            ("b", Observation(T - 5, ORDER, 10.0)), ("b", Observation(T + 20, ORDER, 5.0)),
            ("c", Observation(T - 5, PAGE))]
    h = hist(rows)
    f = features_at(h, T)
    lab = labels_at(h, T, 14, f.rows, churn_days=14)
    assert lab.purchased.tolist() == [True, False, False]
    assert lab.orders.tolist() == [1, 0, 0] and lab.revenue.tolist() == [40.0, 0, 0]
    assert lab.discount_used.tolist() == [True, False, False]
    assert lab.churned.tolist() == [False, True, True]  # b: no order within 14 days
    assert labels_at(h, T, 30, f.rows, churn_days=30).churned.tolist() == [False, False, True]
    with pytest.raises(ValueError, match="horizon"):
        labels_at(h, T, 0, f.rows)


def test_affinities_prefer_what_a_profile_buys_over_what_it_glances_at():
    rows = [("a", Observation(T - 2, PRODUCT_VIEW, 20.0, category="Shoes")) for _ in range(3)]
    rows += [("a", Observation(T - 1, ITEM, 20.0, category="Bags")) for _ in range(2)]
    rows += [("b", Observation(T - 1, PRODUCT_VIEW, 20.0, category="Shoes")) for _ in range(9)]
    rows += [("c", Observation(T - 1, PAGE))]
    h = hist(rows)
    f = features_at(h, T)
    best, share = attribute_affinities(h, T, f.rows)["category"]
    names = [h.vocab["category"][v] for v in best]
    assert names[0] == "Bags" and names[1] == "Shoes"
    assert names[2] == "Shoes"  # no history: the population's favourite
    assert 0 < share[2] < share[1] <= 1


def _random_history(seed: int, profiles: int = 60, rows: int = 3000) -> History:
    rng = np.random.default_rng(seed)
    codes = [PAGE, PRODUCT_VIEW, CART_ADD, ORDER, ITEM, 3, 6, 7, 8, 10, 12, 13, 14, 15]
    cats, brands = ["Bags", "Shoes", "Dresses", "Kids", "Hats"], ["A", "B", "C"]
    obs = []
    for _ in range(rows):
        code = int(rng.choice(codes))
        product = code in (PRODUCT_VIEW, CART_ADD, ITEM)
        obs.append((f"p{int(rng.integers(profiles))}", Observation(
            T - float(rng.uniform(-20, 150)), code, float(rng.uniform(1, 120)), bool(rng.random() < 0.3),
            int(rng.integers(0, 5)), str(rng.choice(cats)) if product and rng.random() < 0.9 else None,
            str(rng.choice(brands)) if product else None)))
    return hist(obs)


@pytest.mark.parametrize(("chunk", "dense", "cells"), [(1 << 20, 64, 1 << 18), (1 << 20, 64, 50), (97, 0, 1 << 18)],
                         ids=["one block", "dense blocks", "sorted chunks"])
def test_features_match_a_direct_pass_over_every_row(monkeypatch, chunk, dense, cells):
    """The cached per-code indexes give what a mask over all rows gives, profile by profile."""
    import cdp_prediction.features as F
    from cdp_prediction.features import APP, CHECKOUT, MSG_DELIVERED, SURVEY

    monkeypatch.setattr(F, "CHUNK_ROWS", chunk)
    monkeypatch.setattr(F, "DENSE_VALUES", dense)
    monkeypatch.setattr(F, "DENSE_CELLS", cells)
    h = _random_history(5)
    for cut in (T - 100.5, T - 30.0, T, T + 25.0):
        f = features_at(h, cut)
        before = h.t < cut
        seen = np.flatnonzero(np.bincount(h.idx[before], minlength=h.n))
        np.testing.assert_array_equal(f.rows, seen)
        for i, r in enumerate(f.rows):
            mine = before & (h.idx == r)
            t, code = h.t[mine], h.code[mine]
            assert f.column("tenure_days")[i] == cut - t.min()
            assert f.column("days_since_last_event")[i] == cut - t.max()
            assert f.column("orders")[i] == (code == ORDER).sum()
            assert f.column("revenue")[i] == pytest.approx(h.value[mine][code == ORDER].sum())
            for w in (7, 30, 90):
                assert f.column(f"product_views_{w}d")[i] == ((code == PRODUCT_VIEW) & (t >= cut - w)).sum()
                assert f.column(f"checkouts_{w}d")[i] == ((code == CHECKOUT) & (t >= cut - w)).sum()
                assert f.column(f"sessions_{w}d")[i] == (h.session_start[mine] & (t >= cut - w)).sum()
            assert f.column("msg_delivered_90d")[i] == ((code == MSG_DELIVERED) & (t >= cut - 90)).sum()
            surveys = code == SURVEY
            if surveys.any():
                assert f.column("survey_score")[i] == pytest.approx(h.value[mine][surveys].mean())
            used = {int(c) for c in h.channel[mine][code != MSG_DELIVERED]} & {WEB, APP, STORE}
            assert f.column("channels_used")[i] == len(used)
            cat = h.attrs["category"][mine]
            cat = cat[(cat >= 0) & np.isin(code, (PRODUCT_VIEW, CART_ADD, ITEM))]
            assert f.column("distinct_categories")[i] == len(set(cat.tolist()))
            if len(cat):
                p = np.bincount(cat)[np.unique(cat)] / len(cat)
                assert f.column("category_entropy")[i] == pytest.approx(-(p * np.log(p)).sum())


@pytest.mark.parametrize(("chunk", "dense", "cells"), [(1 << 20, 64, 1 << 18), (1 << 20, 64, 50), (97, 0, 1 << 18)],
                         ids=["one block", "dense blocks", "sorted chunks"])
def test_affinities_match_a_profile_by_profile_reference(monkeypatch, chunk, dense, cells):
    """The grouped computations (dense profiles x values blocks for small vocabularies, a radix
    sort by value in chunks of rows for large ones) pick, for every profile and attribute,
    exactly what a plain loop over its rows picks."""
    import cdp_prediction.features as F

    monkeypatch.setattr(F, "CHUNK_ROWS", chunk)
    monkeypatch.setattr(F, "DENSE_VALUES", dense)
    monkeypatch.setattr(F, "DENSE_CELLS", cells)
    h = _random_history(9, profiles=80, rows=4000)
    f = features_at(h, T)
    rows = f.rows[::-1].copy()  # any order of rows
    aff = attribute_affinities(h, T, rows)
    weights = {PRODUCT_VIEW: 1.0, CART_ADD: 2.0, ITEM: 4.0}
    for a in ("category", "brand"):
        col, k = h.attrs[a], len(h.vocab[a])
        sel = (h.t < T) & (col >= 0) & np.isin(h.code, list(weights))
        w_all = np.array([weights.get(int(c), 0.0) for c in h.code]) * np.exp2(-(T - h.t) / 60.0)
        prior = np.bincount(col[sel], weights=w_all[sel], minlength=k)
        prior = prior / prior.sum()
        for i, r in enumerate(rows):
            mass: dict[int, float] = {}
            for j in np.flatnonzero(sel & (h.idx == r)):
                mass[int(col[j])] = mass.get(int(col[j]), 0.0) + w_all[j]
            if not mass:
                assert aff[a][0][i] == int(np.argmax(prior)) and aff[a][1][i] == prior.max()
                continue
            total = 0.0
            for v in sorted(mass):
                total += mass[v]
            scores = {v: (m + 3.0 * prior[v]) / (total + 3.0) for v, m in mass.items()}
            top = max(scores.values())
            assert aff[a][0][i] == min(v for v, sc in scores.items() if sc == top)
            assert aff[a][1][i] == top
    assert len(set(aff["category"][0].tolist())) > 1
