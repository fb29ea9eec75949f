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
