"""Identity rules and the resolution decision they imply. Pure: no I/O.

`Rules` is loaded from a mapping (or YAML text) such as::

    limits:                  # most values of a type on one profile; absent or null: unbounded
      user_id: 1
      email: 5
    priority: [user_id, email, phone, crm_id, device_id, anonymous_id]
    blocked:                 # exact (normalized) values or regexes, for one type or any
      - {type: email, value: test@test.com}
      - {value: "null"}
      - {regex: "(?i)undefined|none|nan", reason: "SDK placeholder"}
    shared_max_profiles:     # a value seen on more than K profiles is no longer used to link
      device_id: 3
    merge_protection: [user_id]   # two profiles that both have one never merge

`decide(rules, identifiers, profiles)` says, for one event, which identifiers are dropped
and why, which profile the event belongs to (an existing one or a new one), and which
profiles merge into which survivor and why. The identifiers are taken greedily from the
highest priority down: each is linked unless linking it would break a rule, in which case
the link is dropped (the higher-priority links already taken are kept) and the reason is
recorded.

- Blocked (exact or regex, per type or any type) and over-shared values are dropped first.
- A limit is broken when linking an identifier would raise a type's number of values on
  the resulting profile above its limit (a profile already above a lowered limit stays as
  it is, but gains no more values of that type).
- Merge protection forbids joining two sides that both have a value of a protected type
  (for user_id: two different user ids). It concerns merges only; an event carrying a
  second value of a type is governed by the limit of that type.
- The survivor of a merge is the profile created first (lowest creation sequence), then
  the lowest profile id: deterministic whatever the order of the inputs.

Without limits, protection and sharing thresholds (blocked values are fine), linking is
plain connected components, so the final grouping of identifiers does not depend on the
order of the events; with them, the first links win, and the order is the log's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import yaml

from cdp_core.errors import InvalidArgument

from .domain import PRIORITY
from .normalize import DEFAULT_REGION, DEFAULT_TYPES, IdentifierTypes, InvalidIdentifier, check

Key = tuple[str, str]
NEW = "new"
BLOCKED_MEMO_SIZE = 200_000  # identifiers whose blocked-or-not answer is remembered

# Unlike values of every type: a regex matching all of them would block everything.
_PROBES = ("u-1842", "ada.lovelace@example.com", "+34612345678", "5f0c2b9e-0a61-4c47-9a8e-2b1d5c7e9f30", "CRM-100201",
           "Zz")
_SETTINGS = ("limits", "priority", "blocked", "shared_max_profiles", "merge_protection")
_BLOCK_KEYS = ("type", "value", "regex", "reason")


class RulesError(InvalidArgument):
    """A rule set that cannot be used; `field` names the setting (e.g. `blocked[2].regex`)."""


class Unresolvable(ValueError):
    """Every identifier of the event was dropped: it belongs to no profile."""

    def __init__(self, dropped: Sequence[Dropped]):
        super().__init__("every identifier was dropped: "
                         + "; ".join(f"{d.identifier[0]}: {d.provenance.reason}" for d in dropped))
        self.dropped = tuple(dropped)


@dataclass(frozen=True)
class Block:
    """One blocked-value rule: an exact normalized value or a regex (full match), for a type or any."""

    field: str
    type: str | None
    value: str | None = None
    regex: re.Pattern[str] | None = None
    reason: str = ""

    def matches(self, key: Key) -> bool:
        if self.type is not None and key[0] != self.type:
            return False
        if self.value is not None:
            return key[1] == self.value
        return self.regex is not None and self.regex.fullmatch(key[1]) is not None


@dataclass(frozen=True)
class Provenance:
    """Why something happened: the rule, the identifier it concerns, the confidence and a reason."""

    rule: str
    identifier: Key | None
    confidence: float
    reason: str
    details: Mapping | None = None  # e.g. a probabilistic match's weight and comparisons


@dataclass(frozen=True)
class Dropped:
    """An identifier of the event that is not used; `kept` is the link preferred over it, if any."""

    identifier: Key
    provenance: Provenance
    kept: Key | None = None


@dataclass(frozen=True)
class Merge:
    survivor: str
    merged: str
    provenance: Provenance


@dataclass(frozen=True)
class Profile:
    """A profile as the decision sees it: its id, creation sequence and identifiers by type."""

    profile_id: str
    created_seq: int
    identifiers: Mapping[str, frozenset[str]]

    @classmethod
    def of(cls, profile_id: str, created_seq: int, keys: Iterable[Key]) -> Profile:
        by_type: dict[str, set[str]] = {}
        for t, v in keys:
            by_type.setdefault(t, set()).add(v)
        return cls(profile_id, created_seq, {t: frozenset(vs) for t, vs in by_type.items()})

    def keys(self) -> Iterable[Key]:
        for t, vs in self.identifiers.items():
            for v in vs:
                yield (t, v)


@dataclass(frozen=True)
class Decision:
    """What to do with one event.

    profile: the existing profile the event belongs to (the survivor when profiles merge),
    or NEW for a new profile whose id derives from `anchor`. accepted: the identifiers
    used, in priority order; new_identifiers: those of them to add to the profile.
    """

    profile: str
    anchor: Key
    accepted: tuple[Key, ...]
    new_identifiers: tuple[Key, ...]
    merges: tuple[Merge, ...] = ()
    dropped: tuple[Dropped, ...] = ()

    @property
    def is_new(self) -> bool:
        return self.profile == NEW


@dataclass(frozen=True)
class Rules:
    types: IdentifierTypes = DEFAULT_TYPES
    limits: Mapping[str, int] = field(default_factory=dict)
    priority: tuple[str, ...] = PRIORITY
    blocked: tuple[Block, ...] = ()
    shared_max_profiles: Mapping[str, int] = field(default_factory=dict)
    merge_protection: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        exact: dict[Key | tuple[None, str], Block] = {}
        regexes: list[Block] = []
        for b in self.blocked:
            if b.value is not None:
                exact.setdefault((b.type, b.value), b)
            else:
                regexes.append(b)
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_regexes", tuple(regexes))
        object.__setattr__(self, "_rank", {t: i for i, t in enumerate(self.priority)})
        object.__setattr__(self, "_blocked_memo", {})

    # --- loading -------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, text: str, *, types: IdentifierTypes = DEFAULT_TYPES,
                  default_region: str = DEFAULT_REGION) -> Rules:
        return cls.from_dict(load_yaml(text), types=types, default_region=default_region)

    @classmethod
    def from_dict(cls, data: Mapping, *, types: IdentifierTypes = DEFAULT_TYPES,
                  default_region: str = DEFAULT_REGION) -> Rules:
        """Validated rules; RulesError names the first field at fault."""
        if not isinstance(data, Mapping):
            raise RulesError("must be a mapping of settings", field="rules")
        for k in data:
            if k not in _SETTINGS:
                raise RulesError(f"unknown setting; known: {', '.join(_SETTINGS)}", field=str(k))

        def known_type(t: object, where: str) -> str:
            if not isinstance(t, str) or t not in types:
                raise RulesError(f"unknown identifier type; known: {', '.join(types.all)}", field=where)
            return t

        def type_map(name: str, allow_unbounded: bool) -> dict[str, int]:
            raw = data.get(name) or {}
            if not isinstance(raw, Mapping):
                raise RulesError("must be a mapping of identifier type to a number", field=name)
            out: dict[str, int] = {}
            for t, n in raw.items():
                where = f"{name}.{t}"
                known_type(t, where)
                if allow_unbounded and (n is None or n == "unbounded"):
                    continue
                if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                    hint = " (or null / \"unbounded\")" if allow_unbounded else ""
                    raise RulesError(f"must be a whole number of at least 1{hint}", field=where)
                out[t] = n
            return out

        def type_list(name: str, default: Sequence[str]) -> tuple[str, ...]:
            raw = data.get(name)
            if raw is None:
                return tuple(default)
            if not isinstance(raw, list):
                raise RulesError("must be a list of identifier types", field=name)
            out: list[str] = []
            for i, t in enumerate(raw):
                where = f"{name}[{i}]"
                known_type(t, where)
                if t in out:
                    raise RulesError(f"{t} is listed twice", field=where)
                out.append(t)
            return tuple(out)

        limits = type_map("limits", allow_unbounded=True)
        shared = type_map("shared_max_profiles", allow_unbounded=False)
        priority = type_list("priority", PRIORITY)
        protection = type_list("merge_protection", ())

        raw_blocked = data.get("blocked") or []
        if not isinstance(raw_blocked, list):
            raise RulesError("must be a list of {type, value | regex, reason}", field="blocked")
        blocked: list[Block] = []
        for i, b in enumerate(raw_blocked):
            where = f"blocked[{i}]"
            if not isinstance(b, Mapping):
                raise RulesError("must be a mapping with value or regex (and optionally type, reason)", field=where)
            for k in b:
                if k not in _BLOCK_KEYS:
                    raise RulesError(f"unknown key; known: {', '.join(_BLOCK_KEYS)}", field=f"{where}.{k}")
            type_ = None if b.get("type") is None else known_type(b["type"], f"{where}.type")
            has_value, has_regex = "value" in b, "regex" in b
            if has_value == has_regex:
                raise RulesError("needs exactly one of value and regex", field=where)
            reason = b.get("reason", "")
            if not isinstance(reason, str):
                raise RulesError("must be text", field=f"{where}.reason")
            if has_value:
                v = b["value"]
                if not isinstance(v, str):
                    raise RulesError('must be a string (quote YAML words such as "null", "yes", "1")',
                                     field=f"{where}.value")
                if type_ is not None:
                    try:
                        v = check(type_, v, default_region=default_region, types=types)
                    except InvalidIdentifier as e:
                        raise RulesError(f"{e.reason} as a {type_}, so it would never match",
                                         field=f"{where}.value") from None
                else:
                    v = v.strip()
                    if not v:
                        raise RulesError("is empty", field=f"{where}.value")
                blocked.append(Block(where, type_, value=v, reason=reason))
            else:
                r = b["regex"]
                if not isinstance(r, str) or not r:
                    raise RulesError("must be a non-empty string", field=f"{where}.regex")
                try:
                    pattern = re.compile(r)
                except re.error as e:
                    raise RulesError(f"is not a valid regular expression: {e}", field=f"{where}.regex") from None
                if all(pattern.fullmatch(x) for x in _PROBES):
                    scope = f"every {type_}" if type_ else "every identifier"
                    raise RulesError(f"blocks {scope} (it matches any value): the rules would contradict "
                                     "themselves; block specific values, or stop using the type", field=f"{where}.regex")
                blocked.append(Block(where, type_, regex=pattern, reason=reason))

        return cls(types=types, limits=limits, priority=priority, blocked=tuple(blocked),
                   shared_max_profiles=shared, merge_protection=frozenset(protection))

    # --- queries -------------------------------------------------------------------------

    def sort_key(self, key: Key) -> tuple[int, str, str]:
        """Priority order: the listed types first, in order; the others after them, by name."""
        return (self._rank.get(key[0], len(self.priority)), key[0], key[1])  # type: ignore[attr-defined]

    def blocked_by(self, key: Key) -> Block | None:
        memo = self._blocked_memo  # type: ignore[attr-defined]
        try:
            return memo[key]
        except KeyError:
            pass
        if len(memo) >= BLOCKED_MEMO_SIZE:
            memo.clear()
        b = memo[key] = self._blocked_by(key)
        return b

    def _blocked_by(self, key: Key) -> Block | None:
        exact = self._exact  # type: ignore[attr-defined]
        b = exact.get(key) or exact.get((None, key[1]))
        if b is not None:
            return b
        return next((r for r in self._regexes if r.matches(key)), None)  # type: ignore[attr-defined]


def load_yaml(text: str) -> object:
    """A rules document's YAML ({} when empty); RulesError with the line and column when it
    is not YAML."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise RulesError(f"is not valid YAML{where}", field="rules") from None
    return {} if data is None else data


def conflict_of(rules: Rules, side: Mapping[str, set[str] | frozenset[str]],
              adding: Mapping[str, set[str] | frozenset[str]], merging: bool) -> tuple[str, str] | None:
    """(rule, reason) when joining `adding` to `side` breaks a rule, else None."""
    if merging and side:
        for t in sorted(rules.merge_protection):
            if side.get(t) and adding.get(t):
                return "merge-protection", f"both profiles have a {t}"
    for t in sorted(adding):
        limit = rules.limits.get(t)
        if limit is None:
            continue
        mine, theirs = side.get(t, frozenset()), adding[t]
        n = len(mine | theirs)
        if n > limit and n > max(len(mine), len(theirs)):
            return "limit", f"the profile would have {n} values of {t} (limit {limit})"
    return None


def separated_by(tags: set[tuple[str, int]], adding: set[tuple[str, int]]) -> str | None:
    """The split that keeps two sides apart: a split id tagged with different sides on each."""
    sides = dict(tags)
    for split_id, side in sorted(adding):
        if split_id in sides and sides[split_id] != side:
            return split_id
    return None


def decide(rules: Rules, identifiers: Iterable[Key], profiles: Iterable[Profile], *,
           sightings: Mapping[Key, int] | None = None,
           separations: Mapping[Key, frozenset[tuple[str, int]]] | None = None) -> Decision:
    """The decision for one event.

    identifiers: the event's normalized identifiers. profiles: the current profiles that
    any of them belongs to (others are ignored). sightings: for the types in
    `shared_max_profiles`, how many distinct profiles each value has been presented with
    so far (kept by the caller). separations: for identifiers a split separated, the
    (split id, side) tags; identifiers tagged with different sides of one split never join
    one profile (rule "split"). Unresolvable when every identifier is dropped; ValueError
    when an identifier belongs to two of the profiles (the graph is inconsistent).
    """
    incoming = sorted(set(identifiers), key=rules.sort_key)
    wanted = set(incoming)
    owner: dict[Key, Profile] = {}
    for p in sorted(profiles, key=lambda p: (p.created_seq, p.profile_id)):
        for k in p.keys():
            if k in wanted:
                if k in owner and owner[k].profile_id != p.profile_id:
                    raise ValueError(f"a {k[0]} belongs to two profiles: {owner[k].profile_id}, {p.profile_id}")
                owner[k] = p

    dropped: list[Dropped] = []
    usable: list[Key] = []
    seen = sightings or {}
    for k in incoming:
        b = rules.blocked_by(k)
        if b is not None:
            what = "exact value" if b.value is not None else "regex"
            scope = f"for {b.type}" if b.type else "for any type"
            reason = f"blocked by {b.field} ({what} {scope})" + (f": {b.reason}" if b.reason else "")
            dropped.append(Dropped(k, Provenance("blocked", k, 1.0, reason)))
            continue
        limit = rules.shared_max_profiles.get(k[0])
        if limit is not None and seen.get(k, 0) > limit:
            reason = f"this {k[0]} has been seen on {seen[k]} profiles (more than {limit})"
            dropped.append(Dropped(k, Provenance("shared-value", k, 1.0, reason)))
            continue
        usable.append(k)

    side: dict[str, set[str]] = {}
    tags: set[tuple[str, int]] = set()
    sep = separations or {}
    accepted: list[Key] = []
    joined: dict[str, Profile] = {}
    via: dict[str, Key] = {}
    for k in usable:
        p = owner.get(k)
        if p is not None and p.profile_id in joined:
            accepted.append(k)
            continue
        adding = p.identifiers if p is not None else {k[0]: frozenset((k[1],))}
        conflict = conflict_of(rules, side, adding, merging=p is not None)
        adding_tags: set[tuple[str, int]] = set()
        if sep:
            for key in (p.keys() if p is not None else (k,)):
                adding_tags.update(sep.get(key, ()))
            split_id = separated_by(tags, adding_tags) if conflict is None else None
            if split_id is not None:
                conflict = ("split", f"separated from the profile by split {split_id}")
        if conflict is not None:
            rule, why = conflict
            kept = accepted[0]
            order = "higher-priority" if rules.sort_key(kept)[0] < rules.sort_key(k)[0] else "first-sorting"
            reason = f"{why}; kept the {order} {kept[0]} link"
            dropped.append(Dropped(k, Provenance(rule, k, 1.0, reason), kept=kept))
            continue
        for t, vs in adding.items():
            side.setdefault(t, set()).update(vs)
        tags |= adding_tags
        accepted.append(k)
        if p is not None:
            joined[p.profile_id] = p
            via[p.profile_id] = k

    if not accepted:
        raise Unresolvable(dropped)
    dropped.sort(key=lambda d: rules.sort_key(d.identifier))
    new_ids = tuple(k for k in accepted if k not in owner)
    if not joined:
        return Decision(NEW, accepted[0], tuple(accepted), new_ids, (), tuple(dropped))
    ordered = sorted(joined.values(), key=lambda p: (p.created_seq, p.profile_id))
    survivor = ordered[0]
    merges = []
    for other in ordered[1:]:
        if survivor.created_seq < other.created_seq:
            why = f"older profile (created at log sequence {survivor.created_seq})"
        else:
            why = f"same creation sequence ({survivor.created_seq}), lower profile id"
        merges.append(Merge(survivor.profile_id, other.profile_id,
                            Provenance("shared-identifier", via[other.profile_id], 1.0, why)))
    return Decision(survivor.profile_id, accepted[0], tuple(accepted), new_ids, tuple(merges), tuple(dropped))
