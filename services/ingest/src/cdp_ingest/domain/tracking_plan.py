"""Tracking plans, as Segment Protocols: per source, a JSON Schema for the properties of
each planned track event and one for identify traits; a mode says what happens to a
call that breaks its plan:

- allow: it passes unmarked (violations are still counted);
- flag: it passes, carrying its violations (EventCollected.violations);
- block: it is rejected into failed events with the violations as the reason.

`unplanned_events` says the same for track events the plan does not name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import jsonschema
from jsonschema.validators import validator_for

from cdp_core.errors import InvalidArgument

MODES = ("allow", "flag", "block")
MAX_VIOLATIONS = 10  # per call; the rest are summarized
MAX_PLAN_EVENTS = 2000


def _compile(schema: dict, where: str):
    if not isinstance(schema, dict):
        raise InvalidArgument("must be a JSON Schema object", field=where)
    cls = validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise InvalidArgument(f"is not a valid JSON Schema: {e.message}", field=where) from None
    return cls(schema)


def _messages(validator, instance: dict, prefix: str) -> list[str]:
    out = []
    for err in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in err.absolute_path)
        out.append(f"{prefix}{'.' + path if path else ''}: {err.message}"[:300])
        if len(out) == MAX_VIOLATIONS:
            out.append(f"{prefix}: more violations not shown")
            break
    return out


@dataclass
class TrackingPlan:
    source_id: str
    mode: str
    unplanned_events: str
    events: dict = field(default_factory=dict)  # event name -> validator
    identify: object | None = None
    raw_events: dict = field(default_factory=dict)
    raw_identify: dict | None = None

    def check(self, kind: str, event: str, properties: dict, traits: dict) -> tuple[list[str], str]:
        """(violations, action) for one call; action is allow/flag/block ("" when none)."""
        if kind == "track":
            validator = self.events.get(event)
            if validator is None:
                return ([f"event {event!r} is not in the tracking plan"], self.unplanned_events)
            v = _messages(validator, properties, "properties")
        elif kind == "identify" and self.identify is not None:
            v = _messages(self.identify, traits, "traits")
        else:
            return [], ""
        return (v, self.mode) if v else ([], "")


def _json(where: str, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"is not valid JSON ({e.msg})", field=where) from None


def compile_plan(source_id: str, mode: str, unplanned_events: str, events_json: str,
                 identify_traits_schema_json: str) -> TrackingPlan:
    """Validates and compiles a plan; InvalidArgument names what is wrong."""
    if mode not in MODES:
        raise InvalidArgument(f"must be one of {', '.join(MODES)}", field="plan.mode")
    unplanned_events = unplanned_events or "allow"
    if unplanned_events not in MODES:
        raise InvalidArgument(f"must be one of {', '.join(MODES)}", field="plan.unplanned_events")
    events = _json("plan.events_json", events_json or "{}")
    identify = _json("plan.identify_traits_schema_json", identify_traits_schema_json) \
        if identify_traits_schema_json else None
    if not isinstance(events, dict):
        raise InvalidArgument("must be a JSON object: event name -> JSON Schema", field="plan.events_json")
    if len(events) > MAX_PLAN_EVENTS:
        raise InvalidArgument(f"names {len(events)} events; the limit is {MAX_PLAN_EVENTS}", field="plan.events_json")
    plan = TrackingPlan(source_id, mode, unplanned_events, raw_events=events, raw_identify=identify)
    for name, schema in events.items():
        plan.events[name] = _compile(schema, f"plan.events_json[{name!r}]")
    if identify is not None:
        plan.identify = _compile(identify, "plan.identify_traits_schema_json")
    return plan
