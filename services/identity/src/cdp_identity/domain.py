"""Identity domain: which identifiers an event carries, normalized. Pure: no I/O."""

from __future__ import annotations

import json

from cdp.ingest.v1 import events_pb2
from cdp_core.errors import PoisonMessage

# Order matters: the first identifier present names a new profile (deterministic id).
PRIORITY = ("user_id", "email", "phone", "device_id", "anonymous_id")


def normalize(type_: str, value: str) -> str | None:
    """The canonical form of an identifier value, or None when it is empty."""
    v = value.strip()
    if not v:
        return None
    if type_ == "email":
        v = v.lower()
        if "@" not in v:
            return None
    return v


def _email_from(json_text: str) -> str:
    if not json_text:
        return ""
    try:
        obj = json.loads(json_text)
    except json.JSONDecodeError:
        return ""
    value = obj.get("email") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else ""


def identifiers_of(ev: events_pb2.EventCollected) -> list[tuple[str, str]]:
    """Every normalized (type, value) the event carries, in PRIORITY order, de-duplicated."""
    found: list[tuple[str, str]] = [("user_id", ev.user_id), ("anonymous_id", ev.anonymous_id)]
    context_traits = ""
    if ev.context_json:
        try:
            ctx = json.loads(ev.context_json)
            if isinstance(ctx, dict) and isinstance(ctx.get("traits"), dict):
                context_traits = json.dumps(ctx["traits"])
        except json.JSONDecodeError:
            pass
    for text in (ev.traits_json, context_traits):
        found.append(("email", _email_from(text)))
    found.extend((i.type, i.value) for i in ev.identifiers)
    out: dict[tuple[str, str], None] = {}
    for t, v in found:
        n = normalize(t, v)
        if n is not None:
            out[(t, n)] = None
    ids = list(out)
    if not ids:
        raise PoisonMessage("event carries no identifier")
    rank = {t: i for i, t in enumerate(PRIORITY)}
    return sorted(ids, key=lambda tv: (rank.get(tv[0], len(PRIORITY)), tv[0], tv[1]))
