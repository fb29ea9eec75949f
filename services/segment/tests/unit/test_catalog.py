"""The catalogue in code: at least 120 distinct combinations, every example valid, and
docs/segments.md carrying exactly the generated catalogue."""

from __future__ import annotations

from pathlib import Path

from cdp_segment import catalog
from cdp_segment import definition as d

DOCS = Path(__file__).resolve().parents[4] / "docs" / "segments.md"


def _resolver() -> d.Resolver:
    other = d.validate(d.from_dict({"name": "other", "where": {"known": {"known": True}}}))
    return d.Resolver(lambda name: other if name in ("purchasers-30d", "nps-detractors") else None,
                      {"paris-opera": (48.8719, 2.3316)})


def test_at_least_120_distinct_combinations_each_with_a_valid_example():
    entries = catalog.entries()
    keys = [e.key for e in entries]
    assert len(set(keys)) == len(keys)
    assert len(set(keys)) >= 120
    for e in entries:
        d.validate(d.from_dict({"name": "example", "where": e.example}), _resolver())


def test_every_condition_kind_and_operator_is_catalogued():
    entries = catalog.entries()
    kinds = {e.condition for e in entries}
    node_kinds = {f.name for f in d.pb.Node.DESCRIPTOR.oneofs_by_name["node"].fields}
    assert node_kinds <= kinds
    for type_, ops in d.OPS.items():
        for op in ops:
            assert ("trait", type_, op) in {e.key for e in entries}
            assert ("event", f"property ({type_})", op) in {e.key for e in entries}
    for name, (_, type_) in d.COMPUTED.items():
        assert {op for c, v, op in (e.key for e in entries) if c == "computed" and v == name} >= \
            set(d.OPS[type_]) - {"exists", "not_exists"}


def test_docs_hold_the_generated_catalogue():
    text = DOCS.read_text()
    assert catalog.markdown() in text, "docs/segments.md is stale: python -m cdp_segment.catalog --write docs/segments.md"
