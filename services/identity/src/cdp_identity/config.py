"""The identity configuration an operator applies (`cdp identity rules apply -f rules.yaml`).

One YAML document holds the rules (see rules.py: limits, priority, blocked,
shared_max_profiles, merge_protection) and three more settings::

    identifier_types: [crm_id, loyalty_id]   # custom identifier types, beside the built-in ones
    default_region: ES                       # phones without a country code are read in it
    matching:                                # probabilistic matching of offline records
      enabled: true
      match: 0.9                             # merge at or above this posterior (matching.Thresholds)
      review: 0.5                            # list as a candidate at or above this pair probability
      term_frequencies: true                 # weigh agreement by how common the value is (a rare
                                             # surname counts more than "García"; matching.TermFrequencies);
                                             # the counts weigh once 1,000 records are stored
                                             # (matching.TF_MIN_RECORDS): fewer swing the scores
      size_prior: true                       # a profile with n records gets n times the prior odds
      model: {...}                           # m/u probabilities, the household u, prior, priors by
                                             # kind of pair and vetoes
                                             # (MatchModel.to_dict); default: built in

Versions are kept in the `rules` table; the newest is active. Identifier types and the
default region also have environment defaults (CDP_IDENTITY_TYPES, CDP_IDENTITY_DEFAULT_REGION)
used until a document sets them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg

from cdp_core.errors import InvalidArgument

from .matching import MatchModel, Thresholds
from .normalize import DEFAULT_REGION, IdentifierTypes, check_region
from .rules import Rules, RulesError, load_yaml

TYPES_OPTION = "CDP_IDENTITY_TYPES"  # comma-separated custom identifier types
REGION_OPTION = "CDP_IDENTITY_DEFAULT_REGION"
# Active until an operator applies a document: one user id per profile (two user ids are
# two people), and the placeholder values forms and SDKs are known to send.
DEFAULT_YAML = r"""
limits: {user_id: 1}
merge_protection: [user_id]
blocked:
  - {regex: "(?i)null|undefined|none|nil|nan|unknown|anonymous|n/?a|-|0|\\[object object\\]", reason: "placeholder"}
  - {regex: "0{8}-0{4}-0{4}-0{4}-0{12}", reason: "zeroed advertising id"}
  - {type: email, regex: "(?i)(test@test|no-?e?mail@no-?e?mail|no@e?mail|sin-?e?mail@.*|(.)@\\2)\\.[a-z.]+",
     reason: "placeholder email"}
  - {type: phone, regex: "\\+\\d*?(\\d)\\1{6,}", reason: "placeholder phone (a digit repeated 7 times)"}
"""
_OWN = ("identifier_types", "default_region", "matching")
_MATCHING = ("enabled", "match", "review", "term_frequencies", "size_prior", "model")


@dataclass(frozen=True)
class Matching:
    enabled: bool = True
    match: float = Thresholds.match
    review: float = Thresholds.review
    term_frequencies: bool = True  # best_matches(tf=...): the counts of the stored records' values
    size_prior: bool = True  # best_matches(size_prior=...)
    model: Mapping | None = None  # MatchModel.to_dict(); None: the built-in default


@dataclass(frozen=True)
class IdentityConfig:
    rules: Rules
    default_region: str = DEFAULT_REGION
    matching: Matching = field(default_factory=Matching)
    yaml: str = ""
    version: int = 0

    @property
    def types(self) -> IdentifierTypes:
        return self.rules.types

    @classmethod
    def parse(cls, text: str, *, default_types: tuple[str, ...] = (), default_region: str = DEFAULT_REGION,
              version: int = 0) -> IdentityConfig:
        """Validates a document; RulesError names the first field at fault."""
        data = load_yaml(text)
        if not isinstance(data, Mapping):
            raise RulesError("must be a mapping of settings", field="rules")
        custom = data.get("identifier_types", list(default_types))
        if not isinstance(custom, list):
            raise RulesError("must be a list of type names", field="identifier_types")
        try:
            types = IdentifierTypes(custom)
        except ValueError as e:
            raise RulesError(str(e).split(": ", 1)[-1], field="identifier_types") from None
        region = data.get("default_region", default_region)
        try:
            region = check_region(region if isinstance(region, str) else "")
        except ValueError as e:
            raise RulesError(str(e), field="default_region") from None
        matching = _matching(data.get("matching"))
        rules = Rules.from_dict({k: v for k, v in data.items() if k not in _OWN}, types=types,
                                default_region=region)
        return cls(rules, region, matching, text, version)


def _matching(raw: object) -> Matching:
    if raw is None:
        return Matching()
    if not isinstance(raw, Mapping):
        raise RulesError(f"must be a mapping ({', '.join(_MATCHING)})", field="matching")
    for k in raw:
        if k not in _MATCHING:
            raise RulesError(f"unknown setting; known: {', '.join(_MATCHING)}", field=f"matching.{k}")
    flags = {}
    for name in ("enabled", "term_frequencies", "size_prior"):
        flags[name] = raw.get(name, getattr(Matching, name))
        if not isinstance(flags[name], bool):
            raise RulesError("must be true or false", field=f"matching.{name}")
    m = Matching()
    match, review = raw.get("match", m.match), raw.get("review", m.review)
    for name, v in (("match", match), ("review", review)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1:
            raise RulesError("must be a probability between 0 and 1 (exclusive)", field=f"matching.{name}")
    if review > match:
        raise RulesError(f"must not exceed matching.match ({match})", field="matching.review")
    model = raw.get("model")
    if model is not None:
        if not isinstance(model, Mapping):
            raise RulesError("must be a mapping (see MatchModel)", field="matching.model")
        try:
            MatchModel.from_dict(model)
        except InvalidArgument as e:
            raise RulesError(str(e), field=f"matching.model.{e.field}" if e.field else "matching.model") from None
    return Matching(flags["enabled"], float(match), float(review), flags["term_frequencies"], flags["size_prior"],
                    model)


class ConfigStore:
    """The active configuration, read from the `rules` table (cached by version)."""

    def __init__(self, *, default_types: tuple[str, ...] = (), default_region: str = DEFAULT_REGION):
        self.default_types, self.default_region = default_types, default_region
        self._current = self.parse(DEFAULT_YAML, 0)

    def parse(self, text: str, version: int = 0) -> IdentityConfig:
        return IdentityConfig.parse(text, default_types=self.default_types, default_region=self.default_region,
                                    version=version)

    async def current(self, conn: asyncpg.Connection, version: int | None = None) -> IdentityConfig:
        """The active configuration (`version`: the newest version, when the caller has read it)."""
        if version is None:
            version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM rules")
        if version != self._current.version:
            text = await conn.fetchval("SELECT yaml FROM rules WHERE version = $1", version)
            self._current = self.parse(text, version)
        return self._current

    async def applied_at(self, conn: asyncpg.Connection, version: int):
        return await conn.fetchval("SELECT applied_at FROM rules WHERE version = $1", version)

    async def apply(self, conn: asyncpg.Connection, text: str) -> tuple[IdentityConfig, object]:
        """Validates and stores a new version; returns it and its applied-at time."""
        self.parse(text)
        row = await conn.fetchrow("INSERT INTO rules (yaml) VALUES ($1) RETURNING version, applied_at", text)
        self._current = self.parse(text, row["version"])
        return self._current, row["applied_at"]
