"""The batch evaluator: a validated definition compiled to one SQL boolean expression over the
projection (seg_profiles p, seg_events, seg_accounts), clause for clause the same semantics as
evaluate.py. Every leaf is wrapped in coalesce(..., false), so NOT and NULL never meet.

Values travel as parameters ($n), never in the SQL text; `now` is a parameter too, and every
relative bound is computed from it in Python (exact, whatever the session's time zone).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from . import definition as d

DAY = timedelta(days=1)


class Params:
    def __init__(self, start: int = 1):
        self.values: list[Any] = []
        self.start = start

    def __call__(self, value: Any, cast: str) -> str:
        self.values.append(value)
        return f"${self.start + len(self.values) - 1}::{cast}"


def _path(src: str, path: tuple[str, ...], p: Params) -> str:
    """The jsonb at `path` in `src` (the whole dotted name as one key first, as evaluate.get)."""
    if len(path) == 1:
        return f"({src} -> {p(path[0], 'text')})"
    return f"coalesce({src} -> {p('.'.join(path), 'text')}, {src} #> {p(list(path), 'text[]')})"


def _text(x: str) -> str:
    return f"({x} #>> '{{}}')"


def _isnum(x: str) -> str:
    return f"jsonb_typeof({x}) = 'number'"


def _f8(x: str) -> str:
    """A jsonb number as float8 (jsonb's cast goes through the number's text, as float8 of
    `#>> '{}'` would; the callers guard the type)."""
    return f"({x})::float8"


def _jstr(v: str) -> str:
    """A string as the text of a jsonb string: jsonb equality of strings is byte equality of
    their text, so `x = '"v"'::jsonb` holds exactly when x is the string v (one extraction)."""
    return json.dumps(v)


def _guard(cond: str, body: str) -> str:
    """body where cond holds, else false (CASE: PostgreSQL may evaluate AND's sides in any
    order, and a cast on the wrong type would fail the whole query)."""
    return f"coalesce(CASE WHEN {cond} THEN {body} ELSE false END, false)"


def _same(el: str, v, p: Params) -> str:
    if isinstance(v, bool):
        return f"{el} = {p('true' if v else 'false', 'jsonb')}"
    if isinstance(v, str):
        return f"(jsonb_typeof({el}) = 'string' AND {_text(el)} = {p(v, 'text')})"
    return f"(CASE WHEN {_isnum(el)} THEN {_f8(el)} = {p(v, 'float8')} ELSE false END)"


def test_sql(t: d.Test, x: str, p: Params, now: datetime) -> str:
    """SQL true exactly when evaluate.check(t, value of x, now) is."""
    op, a = t.op, t.value
    if op == "exists":
        return f"coalesce(jsonb_typeof({x}) <> 'null', false)"
    if op == "not_exists":
        return f"NOT coalesce(jsonb_typeof({x}) <> 'null', false)"
    if t.type == "string":
        if op == "equals":
            return f"coalesce({x} = {p(_jstr(a), 'jsonb')}, false)"
        if op == "in":
            return f"coalesce({x} = ANY({p([_jstr(v) for v in a], 'jsonb[]')}), false)"
        s = _text(x)
        body = {
            "equals": lambda: f"{s} = {p(a, 'text')}",
            "not_equals": lambda: f"{s} <> {p(a, 'text')}",
            "contains": lambda: f"strpos({s}, {p(a, 'text')}) > 0",
            "not_contains": lambda: f"strpos({s}, {p(a, 'text')}) = 0",
            "starts_with": lambda: f"starts_with({s}, {p(a, 'text')})",
            "ends_with": lambda: f"right({s}, length({p(a, 'text')})) = {p(a, 'text')}",
            "matches": lambda: f"{s} ~ {p(a, 'text')}",
            "in": lambda: f"{s} = ANY({p(list(a), 'text[]')})",
            "not_in": lambda: f"NOT ({s} = ANY({p(list(a), 'text[]')}))",
        }[op]()
        return _guard(f"jsonb_typeof({x}) = 'string'", body)
    if t.type == "number":
        v = _f8(x)
        if op == "between":
            body = f"{v} BETWEEN {p(a[0], 'float8')} AND {p(a[1], 'float8')}"
        elif op == "in":
            body = f"{v} = ANY({p(list(a), 'float8[]')})"
        else:
            sym = {"equals": "=", "not_equals": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
            body = f"{v} {sym} {p(a, 'float8')}"
        return _guard(_isnum(x), body)
    if t.type == "boolean":
        want = {"is_true": True, "is_false": False}.get(op, a)
        return f"coalesce({x} = {p('true' if want else 'false', 'jsonb')}, false)"
    if t.type == "date":
        ts = f"seg_ts({x})"
        if op == "before":
            body = f"{ts} < {p(a, 'timestamptz')}"
        elif op == "after":
            body = f"{ts} > {p(a, 'timestamptz')}"
        elif op == "between":
            body = f"{ts} >= {p(a[0], 'timestamptz')} AND {ts} < {p(a[1], 'timestamptz')}"
        elif op == "within_last_days":
            body = f"{ts} > {p(now - a * DAY, 'timestamptz')} AND {ts} <= {p(now, 'timestamptz')}"
        elif op == "more_than_days_ago":
            body = f"{ts} <= {p(now - a * DAY, 'timestamptz')}"
        else:  # within_next_days
            body = f"{ts} > {p(now, 'timestamptz')} AND {ts} <= {p(now + a * DAY, 'timestamptz')}"
        return f"coalesce({body}, false)"
    if t.type == "list":
        arr = f"jsonb_typeof({x}) = 'array'"

        def has(v):
            return f"EXISTS (SELECT 1 FROM jsonb_array_elements({x}) el WHERE {_same('el', v, p)})"
        if op == "includes":
            body = has(a)
        elif op == "excludes":
            body = f"NOT {has(a)}"
        elif op == "includes_any":
            body = "(" + " OR ".join(has(v) for v in a) + ")"
        elif op == "includes_all":
            body = "(" + " AND ".join(has(v) for v in a) + ")"
        else:
            sym = {"is_empty": "= 0", "not_empty": "> 0", "size_at_least": ">=", "size_at_most": "<="}[op]
            body = f"jsonb_array_length({x}) {sym}" + (f" {p(a, 'int')}" if op.startswith("size") else "")
        # CASE: the array functions run only on arrays
        return f"coalesce(CASE WHEN {arr} THEN {body} ELSE false END, false)"
    raise AssertionError((t.type, op))


def _window(w: d.Win, col: str, p: Params, now: datetime) -> list[str]:
    out = []
    if w.lo_rel is not None:
        out.append(f"{col} > {p(now - timedelta(seconds=w.lo_rel), 'timestamptz')}")
    if w.hi_rel is not None:
        out.append(f"{col} <= {p(now - timedelta(seconds=w.hi_rel), 'timestamptz')}")
    if w.lo_abs is not None:
        out.append(f"{col} >= {p(w.lo_abs, 'timestamptz')}")
    if w.hi_abs is not None:
        out.append(f"{col} < {p(w.hi_abs, 'timestamptz')}")
    return out


def _event_match(alias: str, name: str, filters, w: d.Win, p: Params, now: datetime) -> list[str]:
    conds = [f"{alias}.name = {p(name, 'text')}", *_window(w, f"{alias}.occurred_at", p, now)]
    for f in filters:
        conds.append(test_sql(f.test, _path(f"{alias}.properties", f.path, p), p, now))
    return conds


def _arr(x: str) -> str:
    return f"(CASE WHEN jsonb_typeof({x}) = 'array' THEN {x} ELSE '[]'::jsonb END)"


def compile_tree(node, p: Params, now: datetime, alias: str = "p", defer: bool = False) -> str:
    """The SQL boolean for `node`, for the row `alias` of seg_profiles. `defer`: event
    EXISTS tests are written so that the planner keeps them as per-row subplans run after the
    profile's own conditions (an index probe per remaining profile), instead of pulling them
    up into a join that drives the scan from seg_events (measured: a nested loop over every
    profile with a matching event, slower than the profile conditions themselves)."""
    tr, cp = f"{alias}.traits", f"{alias}.computed"
    if isinstance(node, d.And):
        return "(" + " AND ".join(compile_tree(x, p, now, alias, defer) for x in node.items) + ")"
    if isinstance(node, d.Or):
        return "(" + " OR ".join(compile_tree(x, p, now, alias, defer) for x in node.items) + ")"
    if isinstance(node, d.Not):
        return f"(NOT {compile_tree(node.item, p, now, alias, defer)})"
    if isinstance(node, d.TraitT):
        return test_sql(node.test, _path(tr, node.path, p), p, now)
    if isinstance(node, d.ComputedT):
        if node.name == d.DERIVED_DAYS:
            days = (f"to_jsonb(floor(extract(epoch from ({p(now, 'timestamptz')} - "
                    f"seg_ts({cp} #> '{{orders,last_order_at}}'))) / 86400))")
            return test_sql(node.test, days, p, now)
        return test_sql(node.test, _path(cp, node.path, p), p, now)
    if isinstance(node, d.AffinityT):
        if node.op == "top_is":
            x = f"({cp} #> {p(['top_affinities', node.dimension], 'text[]')})"
            return f"coalesce(jsonb_typeof({x}) = 'string' AND {_text(x)} = {p(node.value, 'text')}, false)"
        scores = f"({cp} #> {p(['affinities', node.dimension], 'text[]')})"
        if node.op == "in_top":
            return f"coalesce(jsonb_typeof({scores}) = 'object' AND {scores} ? {p(node.value, 'text')}, false)"
        x = f"({scores} -> {p(node.value, 'text')})"
        return _guard(f"jsonb_typeof({scores}) = 'object' AND {_isnum(x)}", f"{_f8(x)} >= {p(node.score, 'float8')}")
    if isinstance(node, d.EventT):
        where = " AND ".join([f"e.profile_id = {alias}.profile_id",
                              *_event_match("e", node.name, node.filters, node.window, p, now)])
        exists = f"EXISTS (SELECT 1 FROM seg_events e WHERE {where})"
        if defer:
            exists = f"coalesce({exists}, false)"  # not pulled up into a join: EXISTS is never NULL
        if node.count_op == "at_least" and node.count == 1:
            return exists
        if node.count_op == "exactly" and node.count == 0:
            return f"NOT {exists}"
        sym = {"at_least": ">=", "at_most": "<=", "exactly": "="}[node.count_op]
        return f"((SELECT count(*) FROM seg_events e WHERE {where}) {sym} {p(node.count, 'bigint')})"
    if isinstance(node, d.SequenceT):
        within = p(timedelta(microseconds=node.within_us), "interval")
        froms, conds = [], []
        for i, (name, filters) in enumerate(node.steps):
            a = f"s{i}"
            froms.append(f"seg_events {a}")
            conds += [f"{a}.profile_id = {alias}.profile_id", *_event_match(a, name, filters, node.window, p, now)]
            if i:
                conds.append(f"{a}.occurred_at > s{i - 1}.occurred_at")
        last = f"s{len(node.steps) - 1}"
        conds.append(f"{last}.occurred_at <= s0.occurred_at + {within}")
        exists = f"EXISTS (SELECT 1 FROM {', '.join(froms)} WHERE {' AND '.join(conds)})"
        return f"coalesce({exists}, false)" if defer else exists
    if isinstance(node, d.ReachableT):
        types, traits = d.CONTACT[node.channel]
        idf = f"{alias}.identifiers"
        has = []
        for t in types:
            ids = _arr(f"({idf} -> {p(t, 'text')})")
            has.append(f"coalesce(jsonb_array_length({ids}) > 0, false)")
        for t in traits:
            x = f"({tr} -> {p(t, 'text')})"
            has.append(f"coalesce(jsonb_typeof({x}) = 'string' AND {_text(x)} <> '', false)")
        revoked = f"coalesce(({cp} #> {p(['consent', node.channel, 'granted'], 'text[]')}) = 'false'::jsonb, false)"
        return f"(({' OR '.join(has)}) AND NOT {revoked})"
    if isinstance(node, d.ConsentT):
        g = f"({cp} #> {p(['consent', node.key, 'granted'], 'text[]')})"
        if node.state == "granted":
            return f"coalesce({g} = 'true'::jsonb, false)"
        if node.state == "revoked":
            return f"coalesce({g} = 'false'::jsonb, false)"
        return f"NOT coalesce(jsonb_typeof({g}) = 'boolean', false)"
    if isinstance(node, d.EngagedT):
        ch = f"({cp} #> {p(['channels', node.channel], 'text[]')})"
        ts = f"seg_ts({ch} -> 'last_engagement_at')"
        return (f"coalesce(({ch} -> 'engaged') = 'true'::jsonb AND {ts} > {p(now - node.days * DAY, 'timestamptz')} "
                f"AND {ts} <= {p(now, 'timestamptz')}, false)")
    if isinstance(node, d.DeviceT):
        items = _arr(f"({cp} -> {p(node.list, 'text')})")
        fld = f"(x -> {p(node.field, 'text')})"
        return f"EXISTS (SELECT 1 FROM jsonb_array_elements({items}) x WHERE {test_sql(node.test, fld, p, now)})"
    if isinstance(node, d.LocationT):
        return test_sql(node.test, f"({cp} #> {p(['last_location', node.field], 'text[]')})", p, now)
    if isinstance(node, d.NearT):
        lat, lon = f"({cp} #> '{{last_location,latitude}}')", f"({cp} #> '{{last_location,longitude}}')"
        p2, l2 = p(node.latitude, "float8"), p(node.longitude, "float8")
        rad = "0.017453292519943295::float8"
        h = (f"power(sin(({p2} * {rad} - {_f8(lat)} * {rad}) / 2), 2) + cos({_f8(lat)} * {rad}) * cos({p2} * {rad}) "
             f"* power(sin(({l2} * {rad} - {_f8(lon)} * {rad}) / 2), 2)")
        dist = f"2 * 6371.0088::float8 * asin(least(1.0::float8, sqrt({h})))"
        return _guard(f"{_isnum(lat)} AND {_isnum(lon)}", f"{dist} <= {p(node.km, 'float8')}")
    if isinstance(node, d.AccountT):
        base = (f"FROM seg_account_members m JOIN seg_accounts a ON a.account_id = m.account_id "
                f"WHERE m.profile_id = {alias}.profile_id")
        if node.trait is None:
            return f"EXISTS (SELECT 1 {base})"
        return f"EXISTS (SELECT 1 {base} AND {test_sql(node.trait.test, _path('a.traits', node.trait.path, p), p, now)})"
    if isinstance(node, d.KnownT):
        known = (f"EXISTS (SELECT 1 FROM jsonb_each({alias}.identifiers) i WHERE i.key <> ALL("
                 f"{p(list(d.ANONYMOUS_TYPES), 'text[]')}) AND jsonb_typeof(i.value) = 'array' "
                 f"AND jsonb_array_length(i.value) > 0)")
        return known if node.known else f"(NOT {known})"
    if isinstance(node, d.ProductT):
        items = _arr(f"({cp} -> {p('products_' + node.list, 'text')})")
        if node.list == "abandoned":  # evaluate._products
            cart = f"({cp} -> 'products_in_cart')"
            items = (f"(CASE WHEN jsonb_typeof({cart}) = 'array' THEN (SELECT coalesce(jsonb_agg(c), '[]'::jsonb) "
                     f"FROM jsonb_array_elements({cart}) c WHERE jsonb_typeof(c) = 'object' "
                     f"AND seg_ts(c -> 'at') + {p(d.ABANDON_WINDOW, 'interval')} <= {p(now, 'timestamptz')}) "
                     f"ELSE {items} END)")
        if node.field is None:
            return f"(jsonb_array_length({items}) > 0)"
        fld = f"(x -> {p(node.field, 'text')})"
        return f"EXISTS (SELECT 1 FROM jsonb_array_elements({items}) x WHERE {test_sql(node.test, fld, p, now)})"
    if isinstance(node, d.OverdueT):
        o = f"({cp} -> 'orders')"
        n, first, last = f"({o} -> 'count')", f"seg_ts({o} -> 'first_order_at')", f"seg_ts({o} -> 'last_order_at')"
        since = f"(extract(epoch from ({p(now, 'timestamptz')} - {last})) * 1000000)::bigint"
        span = f"(extract(epoch from ({last} - {first})) * 1000000)::bigint"
        return _guard(_isnum(n), f"{_f8(n)} >= 2 AND {since}::float8 * ({_f8(n)} - 1) > "
                                 f"{p(node.factor, 'float8')} * {span}::float8")
    raise AssertionError(type(node))


def members_query(tree, now: datetime, *, extra_where: str = "", start: int = 1) -> tuple[str, list]:
    """SELECT profile_id of every live profile the tree holds (plus extra_where, which may use
    parameters numbered before `start`)."""
    p = Params(start)
    # the profile's own conditions first when there are any beside the event ones (an event
    # condition alone is left to the planner: a hash join over seg_events is then best)
    items = tree.items if isinstance(tree, d.And) else (tree,)
    defer = any(not isinstance(x, d.EventT | d.SequenceT) for x in items)
    cond = compile_tree(tree, p, now, defer=defer)
    where = "p.merged_into IS NULL" + (f" AND {extra_where}" if extra_where else "")
    return f"SELECT p.profile_id FROM seg_profiles p WHERE {where} AND {cond}", p.values
