"""Identity domain: which identifiers an event carries, normalized. Pure: no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass

import orjson

from cdp.ingest.v1 import events_pb2
from cdp_core.errors import PoisonMessage

from .normalize import DEFAULT_REGION, DEFAULT_TYPES, IdentifierTypes, InvalidIdentifier, check
from .normalize import normalize as _normalize

# Order matters: the first identifier present names a new profile (deterministic id).
# Custom types (declared in IdentifierTypes) rank after these, by name.
PRIORITY = ("user_id", "email", "phone", "device_id", "anonymous_id")


def normalize(type_: str, value: str, *, default_region: str = DEFAULT_REGION,
              types: IdentifierTypes = DEFAULT_TYPES) -> str | None:
    """The canonical form of an identifier value, or None when it is empty, malformed or of an unknown type."""
    return _normalize(type_, value, default_region=default_region, types=types)


def _traits(json_text: str) -> dict:
    if not json_text:
        return {}
    try:
        obj = orjson.loads(json_text)
    except orjson.JSONDecodeError:  # e.g. integers beyond 64 bits, which the stdlib reads
        try:
            obj = json.loads(json_text)
        except json.JSONDecodeError:
            return {}
    return obj if isinstance(obj, dict) else {}


def _str(obj: dict, key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class Extracted:
    """What identity reads from an event: its usable identifiers (normalized, in PRIORITY
    order), those that were malformed (type, reason — never the value), and its traits
    (context.traits overlaid by traits) for probabilistic matching."""

    keys: list[tuple[str, str]]
    invalid: list[tuple[str, str]]
    traits: dict


def extract(ev: events_pb2.EventCollected, *, default_region: str = DEFAULT_REGION,
            types: IdentifierTypes = DEFAULT_TYPES) -> Extracted:
    """From user_id, anonymous_id, traits.email/phone, context.traits.email/phone and the
    explicit identifiers (built-in types, or custom types declared in `types`)."""
    found: list[tuple[str, str]] = [("user_id", ev.user_id), ("anonymous_id", ev.anonymous_id)]
    context_json = ev.context_json
    # most events' context has no traits: not parsed then (the hot path)
    ctx = _traits(context_json) if '"traits"' in context_json else {}
    context_traits = ctx.get("traits") if isinstance(ctx.get("traits"), dict) else {}
    traits = _traits(ev.traits_json)
    for t in (traits, context_traits):
        found.append(("email", _str(t, "email")))
        found.append(("phone", _str(t, "phone")))
    found.extend((i.type, i.value) for i in ev.identifiers)
    out: dict[tuple[str, str], None] = {}
    invalid: list[tuple[str, str]] = []
    for t, v in found:
        if not v:
            continue
        try:
            out[(t, check(t, v, default_region=default_region, types=types))] = None
        except InvalidIdentifier as e:
            invalid.append((t, e.reason))
    rank = {t: i for i, t in enumerate(PRIORITY)}
    keys = sorted(out, key=lambda tv: (rank.get(tv[0], len(PRIORITY)), tv[0], tv[1]))
    return Extracted(keys, invalid, {**context_traits, **traits} if context_traits else traits)


def identifiers_of(ev: events_pb2.EventCollected, *, default_region: str = DEFAULT_REGION,
                   types: IdentifierTypes = DEFAULT_TYPES) -> list[tuple[str, str]]:
    """Every normalized (type, value) the event carries, in PRIORITY order, de-duplicated.
    Values that do not normalize (malformed, too long, undeclared type) are left out;
    PoisonMessage when none is left."""
    ids = extract(ev, default_region=default_region, types=types).keys
    if not ids:
        raise PoisonMessage("event carries no identifier")
    return ids
