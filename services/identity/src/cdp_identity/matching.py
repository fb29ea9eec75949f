"""Fellegi–Sunter probabilistic record matching for records that share no identifier. Pure: no I/O.

Used incrementally: a record arriving now (a POS receipt with a name, a CRM contact) is
compared with the stored records of existing profiles that share one of its blocking keys.

1. `record_from_traits(traits)` extracts a `MatchRecord` from Segment's reserved traits
   (firstName, lastName, name, birthday, address.{street,city,postalCode,state,country},
   phone, email; `address` nested or flattened as dotted keys) and normalizes it: names and
   addresses lower-cased, accents and punctuation dropped; birthday as YYYY-MM-DD; phone in
   E.164 (`normalize`, default region); the e-mail's local part only (lower-cased, `+tag`
   dropped). Placeholders (test@test.com, +34600000000, "null", …) count as unknown.
2. `blocking_keys(rec)` gives several keys (name+postcode, initials+postcode, full name,
   birthday+initials, phone, e-mail local part), so that a typo in one field still leaves a key
   shared with the true match. The service stores them per record and looks candidates up.
3. `MatchModel.score(a, b)` compares field by field. Each field falls into a level: `exact`,
   one or two fuzzy levels (`close`, `similar`: rapidfuzz Jaro-Winkler or Levenshtein
   thresholds, a nickname table for first names), `different`; when either side lacks the
   field the comparison is neutral (weight 0). A level's weight is log2(m/u) with
   m = P(level | same person) and u = P(level | different people). The match weight adds the
   prior's log-odds log2(λ/(1-λ)), λ being the share of candidate pairs that are matches; the
   probability is 2^W / (1 + 2^W).
4. `MatchModel.default()` has hand-set parameters; `MatchModel.estimate(records)` learns them
   unsupervised: u from random pairs, then m, u and λ by expectation-maximisation over the
   candidate pairs that blocking generates (the pairs the model will actually score).
5. `best_matches(model, rec, candidates, thresholds)` ranks candidates: those at or above
   `thresholds.match` merge (a wrong merge is worse than a miss, so it is set high), those in
   [review, match) are listed for review.
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

import phonenumbers
from rapidfuzz.distance import JaroWinkler, Levenshtein

from cdp_core.errors import InvalidArgument

from .normalize import normalize

FIELDS: tuple[str, ...] = ("first_name", "last_name", "birthday", "street", "city", "postal_code", "state",
                           "phone", "email_local")

# The comparison levels of each field, most to least alike (missing is not a level: neutral).
LEVELS: dict[str, tuple[str, ...]] = {
    "first_name": ("exact", "close", "similar", "different"),
    "last_name": ("exact", "close", "similar", "different"),
    "birthday": ("exact", "close", "different"),
    "street": ("exact", "close", "different"),
    "city": ("exact", "close", "different"),
    "postal_code": ("exact", "close", "different"),
    "state": ("exact", "different"),
    "phone": ("exact", "close", "different"),
    "email_local": ("exact", "close", "different"),
}

# Jaro-Winkler similarity at or above which two names are `close` / `similar`.
NAME_CLOSE = 0.92
NAME_SIMILAR = 0.80
STREET_CLOSE = 0.90
CITY_CLOSE = 0.90

# Fields that describe one place: only the largest agreement weight among them counts (street,
# postcode and city agreeing are one fact, not three); their disagreements all count.
ADDRESS_GROUP: tuple[str, ...] = ("street", "postal_code", "city", "state")
# Fields that people of one household do not share: when one of them is `different`, the pair
# is not merged however strong the rest (a surname, an address and a family e-mail agree for
# every member of a family); it can still be listed for review.
DEFAULT_VETOES: tuple[str, ...] = ("first_name", "birthday")

MIN_OTHER_FIELDS = 2  # besides the last name, a record needs this many known fields

# Nicknames people and cashiers write instead of the full first name (both sides are mapped
# to the full name before comparing: a nickname against its full name is `close`).
NICKNAMES: dict[str, str] = {
    # Spanish
    "paco": "francisco", "pancho": "francisco", "curro": "francisco", "pepe": "jose", "chema": "jose maria",
    "manolo": "manuel", "toni": "antonio", "tono": "antonio", "chus": "jesus", "nacho": "ignacio",
    "quique": "enrique", "alex": "alejandro", "guille": "guillermo", "lola": "dolores", "concha": "concepcion",
    "charo": "rosario", "pili": "pilar", "isa": "isabel", "cris": "cristina", "bea": "beatriz",
    "patri": "patricia", "rober": "roberto", "santi": "santiago", "fran": "francisco", "rafa": "rafael",
    "luisa": "luisa", "maite": "maria teresa", "merche": "mercedes", "nando": "fernando", "javi": "javier",
    "dani": "daniel", "edu": "eduardo", "juanma": "juan manuel", "inma": "inmaculada", "mari": "maria",
    # English
    "bill": "william", "will": "william", "liz": "elizabeth", "beth": "elizabeth", "bob": "robert",
    "rob": "robert", "jim": "james", "jimmy": "james", "mike": "michael", "dave": "david", "tom": "thomas",
    "tony": "anthony", "kate": "katherine", "katie": "katherine", "jen": "jennifer", "jenny": "jennifer",
    "chris": "christopher", "nick": "nicholas", "dick": "richard", "rick": "richard", "joe": "joseph",
    "sam": "samuel", "ben": "benjamin", "dan": "daniel", "matt": "matthew", "steve": "steven",
    "peggy": "margaret", "maggie": "margaret", "sue": "susan", "andy": "andrew", "ed": "edward",
}

PLACEHOLDER_TEXT = frozenset({"", "null", "none", "nil", "nan", "undefined", "unknown", "n/a", "na", "-", "x",
                              "xx", "xxx", "test", "prueba", "desconocido", "sin nombre", "anonymous", "anonimo"})
PLACEHOLDER_EMAIL_LOCALS = frozenset({"test", "noemail", "nomail", "no", "none", "null", "na", "a", "x", "xx",
                                      "xxx", "sinemail", "sincorreo", "nocorreo", "notiene", "email", "mail",
                                      "example", "info", "asdf", "abc", "aaa", "noreply", "no-reply", "nobody",
                                      "unknown", "anonymous", "prueba"})
PLACEHOLDER_EMAIL_DOMAINS = frozenset({"test.com", "example.com", "example.org", "example.net", "noemail.com",
                                       "email.com", "nomail.com", "mailinator.com", "test.es", "ejemplo.com"})
# Regions whose postcodes are five digits, so a lost leading zero ("8001" for "08001") is restored.
FIVE_DIGIT_POSTCODES = frozenset({"ES", "US", "FR", "DE", "IT", "MX", "FI", "HR", "MY", "TH", "EE"})
DAY_FIRST_REGIONS_EXCLUDED = frozenset({"US", "PH", "FM", "PW", "MH"})  # write dates month first


class MatchConfigError(InvalidArgument):
    """A match model or thresholds that cannot be used; `field` names the setting at fault."""


# --- the record ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MatchRecord:
    """The normalized fields a record is matched on; "" when unknown."""

    first_name: str = ""
    last_name: str = ""
    birthday: str = ""
    street: str = ""
    city: str = ""
    postal_code: str = ""
    state: str = ""
    phone: str = ""
    email_local: str = ""

    def to_dict(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in FIELDS}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> MatchRecord:
        """From `to_dict`'s output (stored records); unknown keys are an error, absent ones ""."""
        if not isinstance(d, Mapping):
            raise MatchConfigError("must be a mapping of field to string", field="record")
        for k, v in d.items():
            if k not in FIELDS:
                raise MatchConfigError(f"unknown field; known: {', '.join(FIELDS)}", field=f"record.{k}")
            if not isinstance(v, str):
                raise MatchConfigError("must be a string", field=f"record.{k}")
        return cls(**{f: d.get(f, "") for f in FIELDS})

    def known(self) -> int:
        return sum(1 for f in FIELDS if getattr(self, f))


def _ascii(s: str) -> str:
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode("ascii")


_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_NON_ALPHA = re.compile(r"[^a-z]+")


@lru_cache(maxsize=65_536)
def norm_name(s: str) -> str:
    """Lower case, no accents, letters only, one space between words."""
    v = _NON_ALPHA.sub(" ", _ascii(s).lower()).strip()
    return "" if v in PLACEHOLDER_TEXT else v


@lru_cache(maxsize=65_536)
def norm_text(s: str) -> str:
    """Lower case, no accents, letters and digits only, one space between words."""
    v = _NON_ALNUM.sub(" ", _ascii(s).lower()).strip()
    return "" if v in PLACEHOLDER_TEXT else v


_STREET_ABBR = {"c": "calle", "cl": "calle", "avda": "avenida", "av": "avenida", "avd": "avenida", "pza": "plaza",
                "pl": "plaza", "po": "paseo", "pso": "paseo", "ctra": "carretera", "st": "street", "ave": "avenue",
                "rd": "road", "blvd": "boulevard", "dr": "drive", "ln": "lane"}


def norm_street(s: str) -> str:
    words = norm_text(s.replace("º", " ").replace("ª", " ")).split()
    return " ".join(_STREET_ABBR.get(w, w) for w in words)


def norm_postcode(s: str, region: str = "ES") -> str:
    v = re.sub(r"[\s\-.]", "", _ascii(s).upper())
    if v.lower() in PLACEHOLDER_TEXT or set(v) <= {"0"}:
        return ""
    if region in FIVE_DIGIT_POSTCODES:
        if region == "US" and len(v) == 9 and v.isdigit():
            v = v[:5]  # ZIP+4
        if v.isdigit() and len(v) == 4:
            v = "0" + v  # a leading zero lost by a spreadsheet
    return v


def norm_birthday(v: object, region: str = "ES") -> str:
    """YYYY-MM-DD, or "" when it is not a plausible date."""
    if isinstance(v, datetime):
        d = v.date()
    elif isinstance(v, date):
        d = v
    elif isinstance(v, str):
        s = v.strip()
        m = re.match(r"^(\d{4})-(\d{1,2})-(\d{1,2})", s)
        parts: tuple[int, int, int] | None = None
        if m:
            parts = (int(m[1]), int(m[2]), int(m[3]))
        else:
            m = re.match(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})$", s)
            if m:
                a, b, y = int(m[1]), int(m[2]), int(m[3])
                parts = (y, a, b) if region in DAY_FIRST_REGIONS_EXCLUDED else (y, b, a)
        if parts is None:
            return ""
        try:
            d = date(*parts)
        except ValueError:
            return ""
    else:
        return ""
    if not 1900 <= d.year <= 2100:
        return ""
    return d.isoformat()


def norm_phone(v: str, region: str = "ES") -> str:
    e = normalize("phone", v, default_region=region)
    if e is None:
        return ""
    digits = e[-9:]
    if len(set(digits[1:])) <= 1 or digits in ("123456789", "987654321"):
        return ""  # +34600000000, +34999999999, …: "the customer had no phone"
    return e


def norm_email_local(v: str) -> str:
    s = v.strip()
    e = normalize("email", s) or s.lower()
    if "@" not in e:
        return ""
    local, _, domain = e.rpartition("@")
    local = local.split("+", 1)[0].strip()
    if not local or local in PLACEHOLDER_EMAIL_LOCALS or domain in PLACEHOLDER_EMAIL_DOMAINS:
        return ""
    return local


def _get(traits: Mapping[str, object], *path: str) -> object:
    """traits[a][b] (nested) or traits["a.b"] (flattened); None when absent."""
    cur: object = traits
    for i, p in enumerate(path):
        if not isinstance(cur, Mapping):
            return None
        if p in cur:
            cur = cur[p]
            continue
        dotted = ".".join(path[i:])
        return cur.get(dotted)
    return cur


def _s(v: object) -> str:
    if isinstance(v, bool) or v is None:
        return ""
    if isinstance(v, int | float):
        return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
    return v if isinstance(v, str) else ""


def record_from_traits(traits: Mapping[str, object], *, default_region: str = "ES") -> MatchRecord | None:
    """The match record of an event's traits, or None when it has too little to match on.

    Reads Segment's reserved traits: firstName, lastName (or `name`, split at the first space
    when neither is given), birthday, address (a nested object or flattened `address.street`
    keys: street, city, postalCode, state, country), phone and email. `address.country`, when a
    region code phonenumbers knows, replaces `default_region` for the phone and the postcode.

    None unless the record has a last name and at least two other known fields (e.g. a first
    name and a postcode): a surname with one more field ("García", "Ana") fits too many people
    for a match weight to separate them, so such a record is never matched probabilistically.
    """
    if not isinstance(traits, Mapping):
        return None
    country = _s(_get(traits, "address", "country")).strip().upper()
    region = country if country in phonenumbers.SUPPORTED_REGIONS else default_region
    first = norm_name(_s(traits.get("firstName")))
    last = norm_name(_s(traits.get("lastName")))
    if not first and not last:
        full = norm_name(_s(traits.get("name")))
        if " " in full:
            first, last = full.split(" ", 1)
    rec = MatchRecord(
        first_name=first,
        last_name=last,
        birthday=norm_birthday(traits.get("birthday"), region),
        street=norm_street(_s(_get(traits, "address", "street"))),
        city=norm_text(_s(_get(traits, "address", "city"))),
        postal_code=norm_postcode(_s(_get(traits, "address", "postalCode")), region),
        state=norm_text(_s(_get(traits, "address", "state"))),
        phone=norm_phone(_s(traits.get("phone")), region) if _s(traits.get("phone")).strip() else "",
        email_local=norm_email_local(_s(traits.get("email"))) if _s(traits.get("email")).strip() else "",
    )
    if not rec.last_name or rec.known() - 1 < MIN_OTHER_FIELDS:
        return None
    return rec


# --- blocking -----------------------------------------------------------------------------

def canonical_first(name: str) -> str:
    """The full first name for a nickname (paco → francisco), else the name itself (first word)."""
    full = NICKNAMES.get(name.replace(" ", ""), name)
    return full.split(" ", 1)[0] if full else ""


@lru_cache(maxsize=65_536)
def name_key(name: str) -> str:
    """A coarse phonetic key: the consonant skeleton (first letter kept, vowels, h and doubled
    letters dropped, b/v, z/c(e,i)/s, j/g(e,i), ll/y and k/q/c(a,o,u) merged), at most 4 letters."""
    s = name.replace(" ", "")
    if not s:
        return ""
    s = re.sub(r"c([ei])", r"s\1", s)
    s = re.sub(r"g([ei])", r"j\1", s)
    s = s.replace("ll", "y").replace("qu", "k").replace("ch", "x")
    trans = str.maketrans({"v": "b", "z": "s", "c": "k", "q": "k", "w": "b"})
    s = s.translate(trans)
    out = [s[0]]
    for ch in s[1:]:
        if ch in "aeiouhy" or ch == out[-1]:
            continue
        out.append(ch)
    return "".join(out)[:4]


def blocking_keys(rec: MatchRecord) -> list[str]:
    """Keys under which a record is stored and its candidates are looked up; two records are
    compared when they share at least one. Several keys, so that one typo'd field does not lose
    the true match: a typo in the surname keeps `i:` (initials + postcode), a wrong postcode keeps
    `fl:` (full name), a nickname is mapped to the full name first."""
    keys: list[str] = []
    first = canonical_first(rec.first_name)
    last = rec.last_name.replace(" ", "")
    last1 = rec.last_name.split(" ", 1)[0] if rec.last_name else ""
    if last and rec.postal_code:
        keys.append(f"lp:{name_key(last1)}|{rec.postal_code}")
        if first:
            keys.append(f"i:{first[0]}{last[0]}|{rec.postal_code}")
    if first and last:
        keys.append(f"fl:{first}|{last1}")
        keys.append(f"fk:{name_key(first)}|{name_key(last1)}|{rec.postal_code[:2]}")
        if rec.postal_code:
            keys.append(f"fp:{first}|{last[0]}|{rec.postal_code[:3]}")
    if rec.birthday and last:
        keys.append(f"b:{rec.birthday}|{last[0]}")
    if rec.phone:
        keys.append(f"p:{rec.phone}")
    if rec.email_local:
        keys.append(f"e:{rec.email_local}")
    return list(dict.fromkeys(keys))


# --- comparing ----------------------------------------------------------------------------

@lru_cache(maxsize=262_144)
def _cmp_first(a: str, b: str) -> int:
    if a == b:
        return 0
    ca, cb = canonical_first(a), canonical_first(b)
    if ca == cb or a.replace(" ", "") == b.replace(" ", ""):
        return 1
    s = max(JaroWinkler.similarity(a, b), JaroWinkler.similarity(ca, cb))
    return 1 if s >= NAME_CLOSE else 2 if s >= NAME_SIMILAR else 3


@lru_cache(maxsize=262_144)
def _cmp_last(a: str, b: str) -> int:
    """Surnames word by word when both have several (Spanish first and second surname: the
    second differs between siblings' spouses, cousins, …); against the first word when one side
    has one only (a till writes the first surname): the information at hand agreeing is exact."""
    if a == b:
        return 0
    wa, wb = a.split(" "), b.split(" ")
    if len(wa) > 1 and len(wb) > 1:
        s = min(JaroWinkler.similarity(wa[0], wb[0]), JaroWinkler.similarity(" ".join(wa[1:]), " ".join(wb[1:])))
        s = max(s, JaroWinkler.similarity(a.replace(" ", ""), b.replace(" ", "")) - 0.1)
    elif len(wa) > 1 or len(wb) > 1:
        single, multi = (a, wb) if len(wa) == 1 else (b, wa)
        if single == multi[0] or single == "".join(multi):
            return 0
        s = max(JaroWinkler.similarity(single, multi[0]), JaroWinkler.similarity(single, "".join(multi)))
    else:
        s = JaroWinkler.similarity(a, b)
    return 1 if s >= NAME_CLOSE else 2 if s >= NAME_SIMILAR else 3


def _cmp_birthday(a: str, b: str) -> int:
    if a == b:
        return 0
    ya, ma, da = a.split("-")
    yb, mb, db = b.split("-")
    if (ya == yb and ma == db and da == mb) or Levenshtein.distance(a, b) <= 1:
        return 1
    return 2


@lru_cache(maxsize=65_536)
def _cmp_street(a: str, b: str) -> int:
    if a == b:
        return 0
    return 1 if JaroWinkler.similarity(a, b) >= STREET_CLOSE else 2


def _cmp_city(a: str, b: str) -> int:
    if a == b:
        return 0
    return 1 if JaroWinkler.similarity(a, b) >= CITY_CLOSE else 2


def _cmp_postcode(a: str, b: str) -> int:
    if a == b:
        return 0
    return 1 if Levenshtein.distance(a, b) <= 1 else 2


def _cmp_state(a: str, b: str) -> int:
    return 0 if a == b else 1


def _cmp_phone(a: str, b: str) -> int:
    if a == b:
        return 0
    return 1 if a[-9:] == b[-9:] or Levenshtein.distance(a, b) <= 1 else 2


_DIGITS = re.compile(r"[0-9]+")


@lru_cache(maxsize=65_536)
def _cmp_email(a: str, b: str) -> int:
    """`close`: the same but for dots and underscores, or one letter apart with the same digits.
    Locals that differ in their digits only (ana.garcia2, ana.garcia3) are different people's:
    providers number the namesakes."""
    if a == b:
        return 0
    if a.replace(".", "").replace("_", "") == b.replace(".", "").replace("_", ""):
        return 1
    if _DIGITS.findall(a) != _DIGITS.findall(b):
        return 2
    return 1 if min(len(a), len(b)) >= 6 and Levenshtein.distance(a, b) <= 1 else 2


_COMPARE = {
    "first_name": _cmp_first, "last_name": _cmp_last, "birthday": _cmp_birthday, "street": _cmp_street,
    "city": _cmp_city, "postal_code": _cmp_postcode, "state": _cmp_state, "phone": _cmp_phone,
    "email_local": _cmp_email,
}
MISSING = -1
_GROUP_IX: tuple[int, ...] = tuple(FIELDS.index(f) for f in ADDRESS_GROUP)


def compare_levels(a: MatchRecord, b: MatchRecord) -> tuple[int, ...]:
    """The level index of each field in FIELDS order (an index into LEVELS[field]); -1 when
    either side lacks the field."""
    out = []
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        if not x or not y:
            out.append(MISSING)
        else:
            out.append(_COMPARE[f](x, y) if x <= y else _COMPARE[f](y, x))
    return tuple(out)


# --- the model ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    field: str
    level: str  # one of LEVELS[field], or "missing" (neutral)
    weight: float  # log2(m/u); 0 when missing


@dataclass(frozen=True)
class MatchScore:
    weight: float  # log2(λ/(1-λ)) + the sum of the comparisons' weights
    probability: float  # 2^weight / (1 + 2^weight)
    comparisons: tuple[Comparison, ...]
    vetoed: tuple[str, ...] = ()  # veto fields found `different`: the pair never merges on its own


@dataclass(frozen=True)
class Thresholds:
    """Match probabilities: at or above `match` the records merge; in [review, match) the pair is
    listed for review. The default is set for precision (a wrong merge is worse than a miss)."""

    match: float = 0.99
    review: float = 0.5

    def __post_init__(self) -> None:
        for name in ("match", "review"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 < v <= 1.0:
                raise MatchConfigError("must be a probability in (0, 1]", field=f"thresholds.{name}")
        if self.review > self.match:
            raise MatchConfigError("must not be above thresholds.match", field="thresholds.review")

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Thresholds:
        if not isinstance(d, Mapping):
            raise MatchConfigError("must be a mapping with match and review", field="thresholds")
        for k in d:
            if k not in ("match", "review"):
                raise MatchConfigError("unknown setting; known: match, review", field=f"thresholds.{k}")
        return cls(**{k: d[k] for k in ("match", "review") if k in d})

    def to_dict(self) -> dict[str, float]:
        return {"match": self.match, "review": self.review}


def _log2(x: float) -> float:
    return math.log2(x)


_DEFAULT_MU: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # field: (m per level, u per level), levels as in LEVELS; u is P(level | two random records
    # of different people), m is P(level | two records of one person)
    "first_name": ((0.80, 0.12, 0.04, 0.04), (0.01, 0.002, 0.01, 0.978)),
    "last_name": ((0.80, 0.14, 0.03, 0.03), (0.01, 0.002, 0.01, 0.978)),
    "birthday": ((0.95, 0.03, 0.02), (0.0002, 0.002, 0.9978)),
    "street": ((0.85, 0.10, 0.05), (0.001, 0.01, 0.989)),
    "city": ((0.92, 0.04, 0.04), (0.10, 0.01, 0.89)),
    "postal_code": ((0.85, 0.10, 0.05), (0.003, 0.03, 0.967)),
    "state": ((0.95, 0.05), (0.20, 0.80)),
    "phone": ((0.85, 0.05, 0.10), (0.0001, 0.0001, 0.9998)),
    "email_local": ((0.85, 0.05, 0.10), (0.0001, 0.0001, 0.9998)),
}
# λ, the share of all record pairs that are of one person: about (records per person - 1) / records,
# so 1e-4 suits some tens of thousands of records; `estimate` measures it.
_DEFAULT_PRIOR = 1e-4


@dataclass(frozen=True)
class FieldParams:
    m: tuple[float, ...]
    u: tuple[float, ...]


class MatchModel:
    """m and u per field and level, the prior λ (the share of record pairs that are of one
    person) and the veto fields (see DEFAULT_VETOES)."""

    def __init__(self, params: Mapping[str, FieldParams], prior: float,
                 vetoes: Sequence[str] = DEFAULT_VETOES):
        self.params = dict(params)
        self.prior = prior
        self.vetoes = tuple(vetoes)
        self._weights = {f: tuple(_log2(m) - _log2(u) for m, u in zip(p.m, p.u, strict=True))
                         for f, p in self.params.items()}
        self._prior_weight = _log2(prior) - _log2(1 - prior)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MatchModel) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"MatchModel(prior={self.prior:.4g}, weights={self.weights()})"

    # --- configuration ---------------------------------------------------------------------

    @classmethod
    def default(cls) -> MatchModel:
        return cls({f: FieldParams(m, u) for f, (m, u) in _DEFAULT_MU.items()}, _DEFAULT_PRIOR)

    def to_dict(self) -> dict:
        return {
            "prior": self.prior,
            "vetoes": list(self.vetoes),
            "fields": {f: {"m": dict(zip(LEVELS[f], p.m, strict=True)), "u": dict(zip(LEVELS[f], p.u, strict=True))}
                       for f, p in self.params.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> MatchModel:
        """A validated model. `fields` may name some fields only: the others keep the defaults;
        a named field gives m and u for each of its levels (probabilities in (0, 1] that add up
        to 1 within 0.01; they are then rescaled to add up to 1 exactly). MatchConfigError (an
        InvalidArgument) names the setting at fault, e.g. `fields.first_name.m.close`."""
        if not isinstance(d, Mapping):
            raise MatchConfigError("must be a mapping with prior and fields", field="model")
        for k in d:
            if k not in ("prior", "fields", "vetoes"):
                raise MatchConfigError("unknown setting; known: prior, fields, vetoes", field=str(k))
        prior = d.get("prior", _DEFAULT_PRIOR)
        if isinstance(prior, bool) or not isinstance(prior, int | float) or not 0.0 < prior < 1.0:
            raise MatchConfigError("must be a probability strictly between 0 and 1", field="prior")
        fs = d.get("fields", {})
        if not isinstance(fs, Mapping):
            raise MatchConfigError("must be a mapping of field name to {m, u}", field="fields")
        params = {f: FieldParams(m, u) for f, (m, u) in _DEFAULT_MU.items()}
        for f, spec in fs.items():
            where = f"fields.{f}"
            if f not in LEVELS:
                raise MatchConfigError(f"unknown field; known: {', '.join(FIELDS)}", field=where)
            if not isinstance(spec, Mapping):
                raise MatchConfigError("must be a mapping with m and u", field=where)
            for k in spec:
                if k not in ("m", "u"):
                    raise MatchConfigError("unknown setting; known: m, u", field=f"{where}.{k}")
            probs = []
            for which in ("m", "u"):
                if which not in spec:
                    raise MatchConfigError(f"is required (one probability per level: {', '.join(LEVELS[f])})",
                                           field=f"{where}.{which}")
                probs.append(_level_probs(spec[which], f, f"{where}.{which}"))
            params[f] = FieldParams(probs[0], probs[1])
        vetoes = d.get("vetoes", DEFAULT_VETOES)
        if isinstance(vetoes, str) or not isinstance(vetoes, Sequence):
            raise MatchConfigError("must be a list of field names", field="vetoes")
        for i, f in enumerate(vetoes):
            if f not in LEVELS:
                raise MatchConfigError(f"unknown field; known: {', '.join(FIELDS)}", field=f"vetoes[{i}]")
        return cls(params, float(prior), tuple(vetoes))

    # --- scoring ---------------------------------------------------------------------------

    @property
    def prior_weight(self) -> float:
        """log2(λ / (1 - λ)), the match weight before any comparison."""
        return self._prior_weight

    def weights(self) -> dict[str, dict[str, float]]:
        """log2(m/u) per field and level."""
        return {f: dict(zip(LEVELS[f], (round(x, 3) for x in w), strict=True)) for f, w in self._weights.items()}

    def _contributions(self, levels: Sequence[int]) -> list[float]:
        ws = [0.0 if lv == MISSING else self._weights[f][lv] for f, lv in zip(FIELDS, levels, strict=True)]
        best = max(_GROUP_IX, key=lambda k: ws[k])
        for k in _GROUP_IX:
            if k != best and ws[k] > 0:
                ws[k] = 0.0
        return ws

    def weight_of(self, levels: Sequence[int]) -> float:
        """The match weight of a comparison pattern (level indices in FIELDS order)."""
        return self._prior_weight + sum(self._contributions(levels))

    def score(self, a: MatchRecord, b: MatchRecord) -> MatchScore:
        """The match weight (prior log-odds plus each field's counted weight) and probability.
        A Comparison's weight is what counted: 0 when missing, and 0 for an address field that
        agrees less strongly than another address field (ADDRESS_GROUP)."""
        levels = compare_levels(a, b)
        ws = self._contributions(levels)
        comps = tuple(Comparison(f, "missing" if lv == MISSING else LEVELS[f][lv], w)
                      for f, lv, w in zip(FIELDS, levels, ws, strict=True))
        w = self._prior_weight + sum(ws)
        vetoed = tuple(c.field for c in comps if c.field in self.vetoes and c.level == "different")
        return MatchScore(w, _probability(w), comps, vetoed)

    # --- estimation ------------------------------------------------------------------------

    @classmethod
    def estimate(cls, records: Sequence[MatchRecord], *, max_iter: int = 50, seed: int = 0,
                 random_pairs: int = 50_000, max_block: int = 200, tol: float = 1e-5) -> MatchModel:
        """Parameters learnt from the records alone (no labels), as Splink trains its models.

        - u: the level frequencies over `random_pairs` random pairs (nearly all of different
          people), so u is P(level | two records of different people), whatever blocking does.
        - m: EM over the candidate pairs that blocking generates (keys shared by more than
          `max_block` records are skipped), in two sessions so that the fields a block agrees on
          by construction do not drive it: over pairs with the same first and last name, the m of
          every other field; over pairs with the same surname key or initials and postcode, the m
          of the names (address fields left out: people of one household share them). Each
          session: E, the match posterior of each pair from m, u fixed, and the session's λ; M, m
          and λ as posterior-weighted frequencies; until λ moves less than `tol` or `max_iter`.
        - the prior λ: the share of all pairs that match, i.e. the expected matches among the
          candidate pairs (EM over λ alone, m and u fixed) over n(n-1)/2. It shrinks as the
          population grows, as it should: a name and a postcode say less among more people.

        Fields never compared keep the default parameters. Deterministic for a given seed.
        """
        import numpy as np

        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise MatchConfigError("must be an integer of at least 1", field="max_iter")
        recs = list(records)
        n = len(recs)
        default = cls.default()
        if n < 2:
            return default
        rng = random.Random(seed)
        nf = len(FIELDS)
        counts_u = [[0.0] * len(LEVELS[f]) for f in FIELDS]
        for _ in range(random_pairs):
            i, j = rng.randrange(n), rng.randrange(n)
            if i == j:
                continue
            for k, lv in enumerate(compare_levels(recs[i], recs[j])):
                if lv != MISSING:
                    counts_u[k][lv] += 1
        u = [np.array(_smooth(c)) for c in counts_u]
        index: dict[str, list[int]] = {}
        for i, r in enumerate(recs):
            for key in blocking_keys(r):
                index.setdefault(key, []).append(i)

        def pairs_of(prefixes: tuple[str, ...]) -> np.ndarray:
            out: set[tuple[int, int]] = set()
            for key, ids in index.items():
                if len(ids) < 2 or len(ids) > max_block or not key.startswith(prefixes):
                    continue
                for x in range(len(ids)):
                    for y in range(x + 1, len(ids)):
                        out.add((ids[x], ids[y]))
            if not out:
                return np.zeros((0, nf), dtype=np.int8)
            return np.array([compare_levels(recs[i], recs[j]) for i, j in sorted(out)], dtype=np.int8)

        m = [np.array(default.params[f].m, dtype=float) for f in FIELDS]
        ix = {f: FIELDS.index(f) for f in FIELDS}
        not_names = [ix[f] for f in FIELDS if f not in ("first_name", "last_name")]
        sessions = (
            # same first and last name: the other fields' m (namesakes vs the same person)
            (("fl:",), not_names, not_names),
            # same phone, or same birthday and initial: the names' m (phone and birthday left out,
            # as the blocks agree on them by construction)
            (("p:", "b:"), [k for k in range(nf) if k not in (ix["phone"], ix["birthday"])],
             [ix["first_name"], ix["last_name"]]),
        )
        learnt: set[int] = set()
        for prefixes, use, learn in sessions:
            levels = pairs_of(prefixes)
            if len(levels) == 0:
                continue
            patterns, counts = np.unique(levels, axis=0, return_counts=True)
            learn = [k for k in learn if np.any(patterns[:, k] != MISSING)]
            sm, _ = _em(patterns, counts.astype(float), [x.copy() for x in m], u, use, learn,
                        max_iter=max_iter, tol=tol)
            for k in learn:
                m[k] = sm[k]
                learnt.add(k)
        for k in learnt:
            m[k] = np.array(_monotone(m[k], u[k]))
        # the prior: expected matches among all candidate pairs, over all pairs
        levels = pairs_of(("",))
        prior = default.prior
        if len(levels):
            patterns, counts = np.unique(levels, axis=0, return_counts=True)
            _, lam = _em(patterns, counts.astype(float), m, u, list(range(nf)), [], max_iter=max_iter, tol=tol)
            prior = min(max(lam * len(levels) / (n * (n - 1) / 2), 1e-12), 0.5)
        params = {}
        for k, f in enumerate(FIELDS):
            if k not in learnt:
                params[f] = default.params[f]
            else:
                params[f] = FieldParams(tuple(round(float(x), 8) for x in m[k]),
                                        tuple(round(float(x), 8) for x in u[k]))
        return cls(params, float(f"{prior:.6g}"))


def _em(patterns, counts, m, u, use: list[int], learn: list[int], *, max_iter: int, tol: float,
        lam: float = 0.1):
    """EM over distinct comparison patterns (rows of level indices) with their counts: the
    likelihood over the fields in `use`; the m of the fields in `learn` and λ re-estimated, u
    fixed. Returns (m, λ)."""
    import numpy as np

    for _ in range(max_iter):
        w = np.zeros(patterns.shape)
        for k in use:
            col = patterns[:, k]
            seen = col != MISSING
            w[seen, k] = np.log(m[k][col[seen]]) - np.log(u[k][col[seen]])
        g_ix = list(_GROUP_IX)
        grp = w[:, g_ix]
        logr = (w.sum(axis=1) - grp.sum(axis=1) + np.clip(grp, None, 0).sum(axis=1)
                + np.clip(grp, 0, None).max(axis=1))
        a = math.log(lam) - math.log(1 - lam) + logr
        g = 1.0 / (1.0 + np.exp(np.clip(-a, -700, 700)))
        wm = g * counts
        new_lam = min(max(float(wm.sum() / counts.sum()), 1e-9), 1 - 1e-9)
        for k in learn:
            col = patterns[:, k]
            seen = col != MISSING
            cm = np.bincount(col[seen], weights=wm[seen], minlength=len(m[k]))
            m[k] = np.array(_smooth(cm.tolist(), 0.1))
        done = abs(new_lam - lam) < tol
        lam = new_lam
        if done:
            break
    return m, lam


def _monotone(m, u):
    """m adjusted so that the weights log2(m/u) do not rise from one level to the next (a close
    name never counts more than an exact one); the mass taken off goes to the exact level."""
    m = [float(x) for x in m]
    for i in range(1, len(m)):
        cap = u[i] * m[i - 1] / u[i - 1]
        if m[i] > cap:
            m[0] += m[i] - cap
            m[i] = cap
    return m


def _smooth(counts: Sequence[float], alpha: float = 0.5) -> tuple[float, ...]:
    """Level frequencies with a small pseudo-count, so that no probability is 0."""
    total = sum(counts) + alpha * len(counts)
    return tuple((c + alpha) / total for c in counts)


def _level_probs(spec: object, f: str, where: str) -> tuple[float, ...]:
    if not isinstance(spec, Mapping):
        raise MatchConfigError(f"must map each level ({', '.join(LEVELS[f])}) to a probability", field=where)
    for k in spec:
        if k not in LEVELS[f]:
            raise MatchConfigError(f"unknown level; known: {', '.join(LEVELS[f])}", field=f"{where}.{k}")
    out = []
    for lv in LEVELS[f]:
        if lv not in spec:
            raise MatchConfigError("is required", field=f"{where}.{lv}")
        v = spec[lv]
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 < v <= 1.0 or math.isnan(v):
            raise MatchConfigError("must be a probability in (0, 1]", field=f"{where}.{lv}")
        out.append(float(v))
    total = sum(out)
    if abs(total - 1.0) > 0.01:
        raise MatchConfigError(f"the levels' probabilities add up to {total:.4g}, not 1", field=where)
    return tuple(v / total for v in out)


def _probability(w: float) -> float:
    if w > 60:
        return 1.0
    if w < -60:
        return 0.0
    x = 2.0 ** w
    return x / (1.0 + x)


# --- deciding -----------------------------------------------------------------------------

def best_matches(model: MatchModel, rec: MatchRecord, candidates: Iterable[tuple[str, MatchRecord]],
                 thresholds: Thresholds = Thresholds()) -> tuple[list[tuple[str, MatchScore]],
                                                                 list[tuple[str, MatchScore]]]:
    """(matches, review): the candidates (by id; an id seen with several records keeps its best
    score) whose probability is at least `thresholds.match` and that no veto field forbids,
    best first, and the others whose probability is at least `thresholds.review`, best first. Ties are broken by id, so the order is deterministic."""
    best: dict[str, MatchScore] = {}
    for cid, other in candidates:
        s = model.score(rec, other)
        cur = best.get(cid)
        if cur is None or s.weight > cur.weight:
            best[cid] = s
    ranked = sorted(best.items(), key=lambda kv: (-kv[1].weight, kv[0]))
    matches = [(c, s) for c, s in ranked if s.probability >= thresholds.match and not s.vetoed]
    review = [(c, s) for c, s in ranked
              if s.probability >= thresholds.review and (s.probability < thresholds.match or s.vetoed)]
    return matches, review


__all__ = [
    "FIELDS", "LEVELS", "Comparison", "MatchConfigError", "MatchModel", "MatchRecord", "MatchScore", "Thresholds",
    "best_matches", "blocking_keys", "compare_levels", "record_from_traits",
]
