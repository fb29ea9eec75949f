"""The incremental computed traits (incremental.State) give exactly what the full computation
(computed.compute, the reference) gives, for random event sequences folded in random
orders, with the state stored and loaded between batches as the projection does."""

from __future__ import annotations

import json
import random
import zlib
from datetime import UTC, datetime, timedelta

import pytest

from cdp_profile import computed
from cdp_profile.computed import Event, Settings, compute
from cdp_profile.incremental import State, Unfoldable

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UAS = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Version/17.2 Mobile/15E148 "
       "Safari/604.1",
       "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0 Safari/537.36",
       "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36")
TZS = ("Europe/Madrid", "Atlantic/Canary", "America/New_York", "Not/AZone")


def _product(rng: random.Random, k: int, full: bool) -> dict:
    p = {"sku": f"S{k}", "product_id": f"p{k}", "name": f"Thing {k}", "category": rng.choice("ABC"),
         "brand": rng.choice(("X", "Y")), "price": rng.choice((9.95, 30, "80.5"))}
    if rng.random() < 0.3:
        p["variant"] = rng.choice(("Black / M", "Red / S"))
    if not full:
        for f in rng.sample(sorted(p), rng.randint(1, 3)):
            if f not in ("sku",):
                p.pop(f)
    if rng.random() < 0.1:
        p.pop("sku")
    if rng.random() < 0.1:
        p["coupon"] = "X"
    return p


def random_events(rng: random.Random, n: int, products: int = 14, client: bool = True) -> list[Event]:
    """Random events of one person; client=False: server-side only (no visits, so out-of-order
    events fold without a rebuild more often and the order-free folds are exercised)."""
    evs = []
    orders = [f"o{i}" for i in range(max(1, n // 6))]
    for i in range(n):
        # clustered times with ties: sessions, and several events in the same millisecond
        at = T0 + timedelta(minutes=rng.choice((0, 5, 20, 31, 45, 90, 600, 1500, 3000, 20_000)) * rng.random())
        if rng.random() < 0.15 and evs:
            at = rng.choice(evs).occurred_at
        at = at.replace(microsecond=(at.microsecond // 1000) * 1000)
        ctx: dict = {}
        r = rng.random() if client else 0.75
        if r < 0.5:
            ctx["userAgent"] = rng.choice(UAS)
            ctx["library"] = {"name": "analytics.js"}
        elif r < 0.7:
            ctx["device"] = {"model": rng.choice(("iPhone15,2", "iPad13,1")), "manufacturer": "Apple"}
            ctx["os"] = {"name": "iOS", "version": rng.choice(("17.1", "17.2"))}
            ctx["app"] = {"name": "Shop"}
        elif r < 0.8:
            ctx["library"] = {"name": "cdp-shopify"}
        if rng.random() < 0.3:
            ctx["timezone"] = rng.choice(TZS)
        if rng.random() < 0.3:
            ctx["ip"] = f"10.0.0.{rng.randint(1, 4)}"
        if rng.random() < 0.1:
            ctx["location"] = {"latitude": rng.random(), "longitude": 2.5, "city": rng.choice(("Madrid", "Vigo"))}
        if rng.random() < 0.1:
            ctx["traits"] = {"address": {"city": rng.choice(("Lugo", "Soria"))}, "sms_opt_in": rng.random() < .5}
        if rng.random() < 0.1:
            ctx["consent"] = {"categoryPreferences": {"ads": rng.random() < 0.5}}
        kind, name, props, traits = "track", "", {}, {}
        source = rng.choice(("web", "app", "server", "pos", "email")) if client else "server"
        r = rng.random()
        if r < 0.25:
            name = "Product Viewed"
            props = _product(rng, rng.randrange(products), rng.random() < 0.8)
        elif r < 0.40:
            name = "Product Added"
            props = _product(rng, rng.randrange(products), rng.random() < 0.8)
        elif r < 0.45:
            name = "Product Removed"
            props = _product(rng, rng.randrange(products), True)
        elif r < 0.55:
            name = "Order Completed"
            props = {"products": [_product(rng, rng.randrange(products), rng.random() < 0.7)
                                  for _ in range(rng.randint(0, 3))]}
            if rng.random() < 0.8:
                props["order_id"] = rng.choice(orders)
            if rng.random() < 0.7:
                props["total"] = rng.choice((10, 25.5, "33.10"))
            if rng.random() < 0.2:
                props["discount"] = 2
            if rng.random() < 0.2:
                props["store_id"] = "s1"
            if rng.random() < 0.2:
                props["source_name"] = rng.choice(("web", "pos", "iphone"))
        elif r < 0.58:
            name = "Order Refunded"
            props = {"refund_id": rng.choice(("r1", "r2", "")), "total": rng.choice((5, 7))}
        elif r < 0.66:
            name = rng.choice(("Email Opened", "Email Delivered", "SMS Link Clicked", "Push Notification Tapped",
                               "Email Unsubscribed", "SMS Subscribed", "Store Visited"))
        elif r < 0.70:
            name = "Survey Completed"
            props = {"survey_type": "nps", "score": rng.randint(0, 11)}
        elif r < 0.80:
            kind = "identify"
            traits = {"email_opt_in": rng.random() < 0.5, "plan": "x"}
            if rng.random() < 0.5:
                traits["address"] = {"city": rng.choice(("Cadiz", "Leon")), "country": "ES"}
        elif r < 0.92 and client:
            kind, name = rng.choice((("page", "/"), ("screen", "Home")))
        else:
            name = "Something Else"
        evs.append(Event(event_id=f"e{i:03d}-{rng.randrange(10**6)}", kind=kind, name=name, occurred_at=at,
                         properties=props, traits=traits, context=ctx, source_kind=source))
    return evs


def _norm(x):
    return json.loads(json.dumps(x, sort_keys=True))


def fold_like_the_projection(events: list[Event], rng: random.Random, settings: Settings) -> tuple[State, int]:
    """Random batches in a random order; each batch sorted (as the projection sorts it),
    stored and loaded between batches; on Unfoldable, rebuilt from every event seen so far."""
    order = events[:]
    rng.shuffle(order)
    state: State | None = None
    seen: list[Event] = []
    rebuilt = 0
    i = 0
    while i < len(order):
        batch = order[i:i + rng.randint(1, 6)]
        i += len(batch)
        seen += batch
        if state is None:
            state = State(settings)
        try:
            for e in sorted(batch, key=lambda e: (e.occurred_at, e.event_id)):
                state.fold(e)
        except Unfoldable:
            rebuilt += 1
            state = State.from_events(seen, settings)
        state = State.loads(state.dumps(), settings)
    assert state is not None
    return state, rebuilt


@pytest.mark.parametrize("seed", range(300))
def test_random_events_in_random_orders_fold_to_the_full_computation(seed):
    rng = random.Random(seed)
    settings = Settings(last_n=rng.choice((1, 3, 10)), affinity_top_n=rng.choice((1, 5)),
                        abandon_window=timedelta(hours=rng.choice((1, 24))),
                        affinity_half_life_days=rng.choice((0.5, 30.0)))
    events = random_events(rng, rng.randint(1, 60), client=seed % 2 == 0)
    want = compute(events, now=max(e.occurred_at for e in events), settings=settings)
    state, _ = fold_like_the_projection(events, rng, settings)
    assert _norm(state.result()) == _norm(want)
    assert _norm(State.from_events(reversed(events), settings).result()) == _norm(want)


@pytest.mark.parametrize("seed", range(60))
def test_the_values_after_every_fold_into_one_state_equal_the_full_computation(seed):
    """One state kept in memory across folds (as the projection holds it between batches),
    its values read after every event: what result() keeps between folds (the lists, the
    cart) never goes stale."""
    rng = random.Random(1000 + seed)
    settings = Settings(last_n=rng.choice((1, 3, 10)), cart_limit=rng.choice((2, 50)),
                        abandon_window=timedelta(hours=rng.choice((1, 24))))
    events = random_events(rng, rng.randint(1, 40), client=seed % 2 == 0)
    if seed % 3:
        events.sort(key=lambda e: (e.occurred_at, e.event_id))
    else:
        rng.shuffle(events)
    st, seen = State(settings), []
    for e in events:
        seen.append(e)
        try:
            st.fold(e)
        except Unfoldable:
            st = State.from_events(seen, settings)
        want = compute(seen, now=max(x.occurred_at for x in seen), settings=settings)
        assert _norm(st.result()) == _norm(want)


def test_in_time_order_everything_folds_without_a_rebuild():
    rng = random.Random(7)
    for _ in range(50):
        events = [e for e in random_events(rng, 40) if not (e.name == "Order Completed")]  # no re-reported orders
        events.sort(key=lambda e: (e.occurred_at, e.event_id))
        st = State()
        for e in events:
            try:
                st.fold(e)
            except Unfoldable as x:  # only the timezone may change under counted activity
                assert "timezone" in str(x) or "fields to fill" in str(x)
                st = State.from_events(events[:events.index(e) + 1])
        assert _norm(st.result()) == _norm(compute(events, now=events[-1].occurred_at))


def test_an_older_client_event_or_a_second_report_of_an_order_asks_for_a_rebuild():
    web = {"library": {"name": "analytics.js"}}
    st = State()
    st.fold(Event("b", "page", "/", T0 + timedelta(hours=1), context=web))
    with pytest.raises(Unfoldable):
        st.fold(Event("a", "page", "/", T0, context=web))
    st = State()
    st.fold(Event("o1", "track", "Order Completed", T0, properties={"order_id": "x", "total": 5}))
    with pytest.raises(Unfoldable):
        st.fold(Event("o2", "track", "Order Completed", T0, properties={"order_id": "x", "total": 5}))


def test_a_product_back_in_a_list_through_an_older_event_folds_when_it_has_every_field():
    """A product that left a last-N list comes back through an event older than the person's
    latest: above the list's floor with every field it folds (it is its newest mention);
    below the floor it stays out; with fields to fill from older mentions it asks for a rebuild."""
    s = Settings(last_n=2)

    def viewed(eid: str, minutes: int, sku: str, full: bool = True) -> Event:
        p = {"sku": sku, "product_id": "p" + sku, "name": "Thing " + sku, "category": "Shoes", "brand": "X",
             "price": 10}
        if not full:
            del p["brand"]
        return Event(eid, "track", "Product Viewed", T0 + timedelta(minutes=minutes), properties=p,
                     source_kind="server")

    history = [viewed("e1", 1, "A"), viewed("e2", 2, "B"), viewed("e3", 3, "C"), viewed("e4", 4, "D")]
    # the list holds C (3 min, "e3": its floor) and D; A and B left it
    for late, back in ((viewed("e5", 3, "A"), True),  # above the floor: A is back, C leaves
                       (viewed("e5", 2, "A"), False),  # below it: the list stays C, D
                       (viewed("e0", 1, "A"), False),
                       (viewed("e5", 3, "A", full=False), None)):  # brand to fill from e1: rebuild
        st = State(s)
        for e in history:
            st.fold(e)
        want = compute([*history, late], now=history[-1].occurred_at, settings=s)
        assert [p["sku"] for p in want["products_viewed"]] == (["D", "A"] if back is not False else ["D", "C"])
        if back is None:
            with pytest.raises(Unfoldable):
                st.fold(late)
            continue
        st.fold(late)
        assert _norm(st.result()) == _norm(want)
        assert _norm(State.loads(st.dumps(), s).result()) == _norm(want)


def test_affinities_decay_lazily_and_exactly():
    """A view a half-life before the latest event counts half, exactly as computed."""
    s = Settings(affinity_half_life_days=10)
    p = {"sku": "A", "category": "Shoes", "price": 10}
    evs = [Event("v1", "track", "Product Viewed", T0, properties=p),
           Event("v2", "track", "Something", T0 + timedelta(days=10))]
    st = State(s)
    for e in evs:
        st.fold(e)
    assert st.result()["affinities"]["category"] == {"Shoes": 0.5}
    assert st.result() == compute(evs, now=evs[-1].occurred_at, settings=s)


def test_a_state_of_another_layout_is_not_used():
    assert State.loads(zlib.compress(b'{"v": 0}')) is None
    assert State.loads(b"not a state") is None
    st = State()
    st.fold(Event("a", "page", "/", T0))
    assert State.loads(st.dumps()).result() == st.result()


def test_no_events():
    assert _norm(State().result()) == _norm(compute([], now=T0)) | {"last_seen": None}
    assert computed.compute([], now=T0)["first_seen"] is None
