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
   shared with the true match (the union of the blocks is compared). The service stores them
   per record and looks candidates up.
3. `compare_levels(a, b, tf)` puts each field in a level (LEVELS): `exact`; for names `close`
   (one keystroke apart — a letter substituted, dropped, doubled or two swapped — or a nickname)
   and `similar` (Jaro-Winkler; a nickname of another name, joe and jose, is at most `similar`);
   for surnames `exact` (all surnames alike) apart from `first` (the one surname both sides give:
   relatives share it); for postcodes `typo` (one character off, one value much rarer than the
   other: its typo) apart from `key` (one digit replaced by a neighbouring key's) and `close`
   (two places people live in); `different`. Missing on either side is neutral (weight 0). With
   term frequencies, two common names one keystroke apart (María, Marina) are `different`, and
   two values two keystrokes apart that are each one keystroke from one common value
   (`typo_source`: cavo and callvo for calvo, 28105 and 28006 for 28005) are `close` names or a
   `typo` postcode: two records that both mistyped it.
4. `MatchModel.score(a, b, tf)`: each level's weight is log2(m/u), m = P(level | same person),
   u = P(level | different people); the prior's log-odds log2(λ/(1-λ)) is added (with term
   frequencies, λ of the pair's kind, PRIOR_KINDS: two till receipts are of one person far more
   often than two CRM contacts) and the probability is 2^W / (1 + 2^W). Address fields count
   once (the strongest); at one dwelling (the street agrees) the surname, e-mail and phone are
   weighed against relatives, not strangers (the household u); with a `TermFrequencies` table,
   agreement on a rare value counts more than on a common one (Splink's term-frequency
   adjustment).
5. `MatchModel.default()` has hand-set parameters; `MatchModel.estimate(records)` learns them
   unsupervised: u from random pairs, the household u from pairs at one address, then m and λ
   (overall and per kind of pair) by expectation-maximisation over the candidate pairs that
   blocking generates.
6. `best_matches(model, rec, candidates, thresholds, tf=, sizes=)` decides: a profile's score is
   its best record's; "the record is profile k's person" and "someone new" exclude each other,
   so the posterior of k is odds_k / (1 + Σ odds) (two namesakes who fit equally well share
   it and neither merges), with n times the prior odds for a profile of n records; the likeliest
   profile also gets the share of another that may be its person (`_shared_posteriors`: two
   profiles of one person, not merged yet, would otherwise split it). At or above
   `thresholds.match` it merges; pairs at or above `thresholds.review` are listed for review.
   `choose_threshold` picks the match threshold from the model's own posteriors for a target
   precision.
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from functools import lru_cache

import phonenumbers
from rapidfuzz.distance import OSA, JaroWinkler, Levenshtein

from cdp_core.errors import InvalidArgument

from .normalize import normalize

FIELDS: tuple[str, ...] = ("first_name", "last_name", "birthday", "street", "city", "postal_code", "state",
                           "phone", "email_local")

# The comparison levels of each field, most to least alike (missing is not a level: neutral).
LEVELS: dict[str, tuple[str, ...]] = {
    "first_name": ("exact", "close", "similar", "different"),
    "last_name": ("exact", "first", "close", "similar", "different"),
    "birthday": ("exact", "close", "different"),
    "street": ("exact", "close", "different"),
    "city": ("exact", "close", "different"),
    "postal_code": ("exact", "typo", "key", "close", "different"),
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
# Fields that people of one household often share. FS weights assume the fields agree
# independently among non-matches, which a household breaks: two relatives at one address agree
# on the surname (and often a family e-mail or a landline) far more often than two strangers.
# When the street agrees (one dwelling), these fields' u is the household u
# (MatchModel.household), which EM estimates from pairs at one address with different first names.
HOUSEHOLD_FIELDS: tuple[str, ...] = ("last_name", "email_local", "phone")
DWELLING_FIELD = "street"
# Fields that people of one household do not share: when one of them is `different`, the pair
# is not merged however strong the rest (a surname, an address and a family e-mail agree for
# every member of a family); it can still be listed for review.
DEFAULT_VETOES: tuple[str, ...] = ("first_name", "birthday")

MIN_OTHER_FIELDS = 2  # besides the last name, a record needs this many known fields

# The kinds of pair the prior λ is kept for: how many of the two records carry an address (a
# street). Fields missing are neutral in the weights, but whether a record has them is not
# neutral for the prior: records without an address (a till receipt: a name and a postcode) come
# from repeat shoppers, so two of them are of one person far more often than two CRM contacts
# (one per person, a duplicate now and then); on the simulator's worlds λ is about 25 times
# larger between two receipts than between two contacts. `MatchModel.estimate` learns one λ per
# kind; a model without them uses its single prior for every pair.
PRIOR_KINDS: tuple[str, ...] = ("none", "one", "both")
MIN_KIND_PAIRS = 50  # candidate pairs of a kind needed to estimate its own λ


def prior_kind(a: MatchRecord, b: MatchRecord) -> int:
    """The index in PRIOR_KINDS of a pair: how many of its records have a street."""
    return (1 if a.street else 0) + (1 if b.street else 0)

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

def _one_edit(a: str, b: str) -> bool:
    """One keystroke apart (a letter substituted, dropped, doubled or two adjacent letters
    swapped: optimal string alignment distance 1), for words of four letters or more."""
    return max(len(a), len(b)) >= 4 and min(len(a), len(b)) >= 3 and OSA.distance(a, b, score_cutoff=1) <= 1


@lru_cache(maxsize=262_144)
def _cmp_first(a: str, b: str) -> int:
    if a == b:
        return 0
    ca, cb = canonical_first(a), canonical_first(b)
    if ca == cb or a.replace(" ", "") == b.replace(" ", ""):
        return 1
    s = max(JaroWinkler.similarity(a, b), JaroWinkler.similarity(ca, cb))
    if a in NICKNAMES or b in NICKNAMES:
        # a nickname of another name is that name, not a typo of this one (joe, jose): at most similar
        return 2 if s >= NAME_SIMILAR or _one_edit(a, b) else 3
    if _one_edit(a, b):
        return 1
    return 1 if s >= NAME_CLOSE else 2 if s >= NAME_SIMILAR else 3


@lru_cache(maxsize=262_144)
def _cmp_last(a: str, b: str) -> int:
    """`exact`: two or more surnames, all alike (Spanish first and second surname); `first`: the
    surname both sides know agrees, one side (or both) giving one only (a till writes the first
    surname; an English record has one): weaker, as relatives share the first surname. Then
    `close` (one keystroke apart, word by word when both have several: the second surname
    differs between cousins, spouses, …), `similar` (Jaro-Winkler), `different`."""
    if a == b:
        return 0 if " " in a else 1
    wa, wb = a.split(" "), b.split(" ")
    if len(wa) > 1 and len(wb) > 1:
        ra, rb = " ".join(wa[1:]), " ".join(wb[1:])
        if (wa[0] == wb[0] or _one_edit(wa[0], wb[0])) and (ra == rb or _one_edit(ra, rb)):
            return 2
        s = min(JaroWinkler.similarity(wa[0], wb[0]), JaroWinkler.similarity(ra, rb))
        s = max(s, JaroWinkler.similarity(a.replace(" ", ""), b.replace(" ", "")) - 0.1)
    elif len(wa) > 1 or len(wb) > 1:
        single, multi = (a, wb) if len(wa) == 1 else (b, wa)
        if single == multi[0] or single == "".join(multi):
            return 1
        if _one_edit(single, multi[0]):
            return 2
        s = max(JaroWinkler.similarity(single, multi[0]), JaroWinkler.similarity(single, "".join(multi)))
    else:
        if _one_edit(a, b):
            return 2
        s = JaroWinkler.similarity(a, b)
    return 2 if s >= NAME_CLOSE else 3 if s >= NAME_SIMILAR else 4


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


# Digits on neighbouring keys, of a keyboard's number row (1 … 9 0) or of a numeric keypad (7 8 9 /
# 4 5 6 / 1 2 3 / 0): the digit a slipped finger types instead.
_KEY_NEIGHBOURS = frozenset(frozenset(p) for p in (
    "12", "23", "34", "45", "56", "67", "78", "89", "90",  # the number row
    "74", "41", "10", "85", "52", "20", "96", "63"))  # the keypad's columns


def _cmp_postcode(a: str, b: str) -> int:
    """`key`: one digit replaced by the digit of a neighbouring key (_KEY_NEIGHBOURS) within one
    region (the first two characters agree: a province in Spain, a group of states in the US);
    `close`: one keystroke apart otherwise within one region (a character substituted, dropped,
    added, or two adjacent ones swapped); else `different`. `typo` is set by `compare_levels`
    from the term frequencies."""
    if a == b:
        return 0
    if a[:2] != b[:2] or OSA.distance(a, b, score_cutoff=1) > 1:
        return 4
    if len(a) == len(b):
        d = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
        if len(d) == 1 and frozenset(d[0]) in _KEY_NEIGHBOURS:
            return 2
    return 3


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
_BLOCK_PREFIXES = ("lp:", "i:", "fl:", "fk:", "fp:", "b:", "p:", "e:")  # blocking_keys' kinds
_GROUP_IX: tuple[int, ...] = tuple(FIELDS.index(f) for f in ADDRESS_GROUP)
_DWELLING_IX = FIELDS.index(DWELLING_FIELD)
_HOUSEHOLD_IX: tuple[int, ...] = tuple(FIELDS.index(f) for f in HOUSEHOLD_FIELDS)
_POSTCODE_IX = FIELDS.index("postal_code")
_PC_TYPO, _PC_CLOSE = LEVELS["postal_code"].index("typo"), LEVELS["postal_code"].index("close")
_PC_KEY = LEVELS["postal_code"].index("key")
TYPO_RATIO = 3.0  # a value this many times rarer than a close one is taken for its typo
TF_COMMON_COUNT = 2  # a name held by this many stored records is a name, not a typo
_NAME_IX = (("first_name", FIELDS.index("first_name")), ("last_name", FIELDS.index("last_name")))
_NAME_CLOSE = {"first_name": LEVELS["first_name"].index("close"), "last_name": LEVELS["last_name"].index("close")}
_NAME_SIMILAR = {"first_name": LEVELS["first_name"].index("similar"), "last_name": LEVELS["last_name"].index("similar")}
_PC_DIFFERENT = LEVELS["postal_code"].index("different")


def compare_levels(a: MatchRecord, b: MatchRecord, tf: TermFrequencies | None = None) -> tuple[int, ...]:
    """The level index of each field in FIELDS order (an index into LEVELS[field]); -1 when
    either side lacks the field.

    With term frequencies, a `key` or `close` postcode where one value is TYPO_RATIO times rarer
    than the other is a `typo`: the rare one is most likely the common one mistyped, and the pair
    is nearly as telling as an exact match, whereas two common postcodes one digit apart are two
    neighbouring places (people living in both). Without, every such pair is `key` or `close`.
    With them too, two values two keystrokes apart that are each one keystroke from one common
    value (`typo_source`) are a `close` name (a `similar` one without) or a `typo` postcode (a
    `different` one without)."""
    out = []
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        if not x or not y:
            out.append(MISSING)
        else:
            out.append(_COMPARE[f](x, y) if x <= y else _COMPARE[f](y, x))
    if tf is not None:
        if out[_POSTCODE_IX] in (_PC_KEY, _PC_CLOSE) and "postal_code" in tf.fields:
            ta, tb = tf.tf("postal_code", a.postal_code), tf.tf("postal_code", b.postal_code)
            if max(ta, tb) >= TYPO_RATIO * min(ta, tb):
                out[_POSTCODE_IX] = _PC_TYPO
        for f, k in _NAME_IX:
            if out[k] == _NAME_CLOSE[f] and f in tf.fields:
                x, y = tf_value(f, getattr(a, f)), tf_value(f, getattr(b, f))
                if x != y and _two_names(tf, f, x, y):
                    out[k] = len(LEVELS[f]) - 1
            elif out[k] == _NAME_SIMILAR[f] and f in tf.fields and _same_source(a, b, f, tf):
                out[k] = _NAME_CLOSE[f]
        if out[_POSTCODE_IX] == _PC_DIFFERENT and "postal_code" in tf.fields and _same_source(a, b, "postal_code", tf):
            out[_POSTCODE_IX] = _PC_TYPO
    return tuple(out)


def _same_source(a: MatchRecord, b: MatchRecord, f: str, tf: TermFrequencies) -> bool:
    """Whether the two values of `f` (two keystrokes apart) are each one keystroke from one common
    value (`typo_source`): two records that both mistyped it (cavo and callvo for calvo, 28105 and
    28006 for 28005). Surnames by their first word, the rest agreeing within a keystroke."""
    x, y = getattr(a, f), getattr(b, f)
    if f == "last_name":
        wx, wy = x.split(" ", 1), y.split(" ", 1)
        if len(wx) > 1 and len(wy) > 1 and wx[1] != wy[1] and not _one_edit(wx[1], wy[1]):
            return False
        x, y = wx[0], wy[0]
    elif f == "postal_code" and x[:2] != y[:2]:
        return False  # two regions: not one value mistyped
    return typo_source(tf, f, tf_value(f, x), tf_value(f, y)) is not None


_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@lru_cache(maxsize=65_536)
def _edits1(s: str) -> frozenset[str]:
    """The strings one keystroke from `s` (a letter or digit substituted, dropped, added, or two
    adjacent ones swapped), over the alphabet of its kind (letters for names; digits and upper
    case letters for postcodes)."""
    alphabet = _LETTERS if s.isalpha() and s.islower() else _ALNUM
    splits = [(s[:i], s[i:]) for i in range(len(s) + 1)]
    out = {lft + rgt[1:] for lft, rgt in splits if rgt}
    out |= {lft + rgt[1] + rgt[0] + rgt[2:] for lft, rgt in splits if len(rgt) > 1}
    out |= {lft + ch + rgt[1:] for lft, rgt in splits if rgt for ch in alphabet}
    out |= {lft + ch + rgt for lft, rgt in splits for ch in alphabet}
    out.discard(s)
    return frozenset(out)


def typo_source(tf: TermFrequencies, f: str, x: str, y: str) -> str | None:
    """The value both `x` and `y` are one keystroke from, when they are two keystrokes apart and it
    is common (held by TF_COMMON_COUNT stored records or more) and TYPO_RATIO times more common
    than either: the two are most likely that one value, mistyped twice (the stored records are
    the dictionary a spelling corrector would use). None otherwise, or when several qualify."""
    if f not in tf.fields or not tf.weighing or x == y or min(len(x), len(y)) < 3:
        return None
    if OSA.distance(x, y, score_cutoff=2) != 2:
        return None
    counts = tf.counts[f]
    need = max(TF_COMMON_COUNT, TYPO_RATIO * max(counts.get(x, 0), counts.get(y, 0), 1))
    found = [c for c in _edits1(x) & _edits1(y) if counts.get(c, 0) >= need]
    return found[0] if len(found) == 1 else None


def _two_names(tf: TermFrequencies, f: str, x: str, y: str) -> bool:
    """Two values one keystroke apart that are both common (each held by TF_COMMON_COUNT stored
    records or more, neither TYPO_RATIO times rarer than the other) are two names (María and
    Marina, Mario and María), not one name and its typo: `different`, not `close`."""
    cx, cy = tf.count(f, x), tf.count(f, y)
    return min(cx, cy) >= TF_COMMON_COUNT and max(cx, cy) < TYPO_RATIO * min(cx, cy)


# --- term frequencies ---------------------------------------------------------------------

# Fields whose agreement is adjusted for how common the value is, and the levels adjusted.
TF_FIELDS: tuple[str, ...] = ("first_name", "last_name", "postal_code")
TF_LEVELS: dict[str, frozenset[str]] = {
    "first_name": frozenset({"exact", "close"}),
    "last_name": frozenset({"exact", "first", "close"}),
    "postal_code": frozenset({"exact", "typo", "key", "close"}),
}
# Fields whose `close` level may weigh more than `exact` when term frequencies weigh: with the
# counts, two common names one keystroke apart are `different` (María, Marina), so a close name is a
# rare spelling beside a common one, rarer among strangers than the same name is (u of close is a
# tenth of u of exact) and as frequent among one person's records as the tills' typos make it (on
# the simulator's worlds EM measures m of close at 0.20-0.26 where a monotone cap held it at 0.09).
TF_FREE_CLOSE_FIELDS: tuple[str, ...] = ("first_name", "last_name")
TF_MAX_BITS = 4.0  # an adjustment moves a field's weight by at most this many bits either way
TF_PSEUDO_COUNT = 1.0  # added to every value's count: an unseen value is rare, not impossible
MAX_TF_VALUE_LENGTH = 200  # longer values are not counted (a record's fields are short)
# A field's counts weigh its values once this many stored records hold it; below, every value
# counts as average (no adjustment) and pairs take the model's single prior: with a handful of
# records the counts swing a score widely (one receipt scored 0.12, 0.56 and 0.02 against
# stores of 1, 6 and 51 records).
TF_MIN_RECORDS = 1000


def tf_value(field: str, value: str) -> str:
    """The value a field is counted under: the first surname (what every record of a person
    shares: a till writes one, the CRM two), the first name's canonical form for a nickname."""
    if field == "last_name":
        return value.split(" ", 1)[0]
    if field == "first_name":
        return canonical_first(value) if value in NICKNAMES else value
    return value


class TermFrequencies:
    """How many stored records hold each value of the TF_FIELDS (an in-memory table; the
    service keeps the same counts per (field, value) in its database and builds one with
    `from_counts`). `tf(field, value)` = (count + TF_PSEUDO_COUNT) / (records + TF_PSEUDO_COUNT
    / u), u being the field's average u of exact agreement: with no records every value is
    average, and a value never seen is rare."""

    def __init__(self, fields: Sequence[str] = TF_FIELDS, *, u: Mapping[str, float] | None = None,
                 min_records: int = TF_MIN_RECORDS):
        self.min_records = min_records
        for f in fields:
            if f not in TF_FIELDS:
                raise MatchConfigError(f"unknown field; known: {', '.join(TF_FIELDS)}", field=f"term_frequency.{f}")
        self.fields = tuple(fields)
        base = MatchModel.default().tf_u() if u is None else u
        self._u = {f: float(base[f]) for f in self.fields}
        self.counts: dict[str, dict[str, int]] = {f: {} for f in self.fields}
        self.totals: dict[str, int] = {f: 0 for f in self.fields}

    @classmethod
    def from_counts(cls, counts: Mapping[str, Mapping[str, int]], totals: Mapping[str, int],
                    fields: Sequence[str] = TF_FIELDS, *, u: Mapping[str, float] | None = None,
                    min_records: int = TF_MIN_RECORDS) -> TermFrequencies:
        """From stored counts: counts[field][value] and totals[field] (records with the field);
        `u` as `MatchModel.tf_u()` (default: the built-in model's)."""
        out = cls(fields, u=u, min_records=min_records)
        for f in out.fields:
            raw = counts.get(f, {})
            if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in raw.values()):
                raise MatchConfigError("counts must be integers of at least 0", field=f"term_frequency.{f}")
            c = {v: n for v, n in raw.items() if n > 0}
            t = totals.get(f, 0)
            if isinstance(t, bool) or not isinstance(t, int) or t < sum(c.values()):
                raise MatchConfigError("the total must be an integer no smaller than the sum of the counts",
                                       field=f"term_frequency.{f}")
            out.counts[f], out.totals[f] = c, t
        return out

    def keys(self, rec: MatchRecord) -> list[tuple[str, str]]:
        """The (field, value) pairs a record is counted under."""
        out = []
        for f in self.fields:
            v = getattr(rec, f)
            if v and len(v) <= MAX_TF_VALUE_LENGTH:
                out.append((f, tf_value(f, v)))
        return out

    def add(self, rec: MatchRecord) -> None:
        for f, v in self.keys(rec):
            self.counts[f][v] = self.counts[f].get(v, 0) + 1
            self.totals[f] += 1

    def remove(self, rec: MatchRecord) -> None:
        """Undoes `add` (a forgotten or split record); a record never added is an error."""
        keys = self.keys(rec)
        for f, v in keys:
            if self.counts[f].get(v, 0) < 1:
                raise MatchConfigError("was never counted", field=f"term_frequency.{f}")
        for f, v in keys:
            self.counts[f][v] -= 1
            if not self.counts[f][v]:
                del self.counts[f][v]
            self.totals[f] -= 1

    def count(self, field: str, value: str) -> int:
        return self.counts[field].get(value, 0)

    @property
    def weighing(self) -> bool:
        """Whether the counts are enough to weigh values by (TF_MIN_RECORDS records with a
        surname, which every match record has)."""
        return self.totals.get("last_name", 0) >= self.min_records

    def tf(self, field: str, value: str) -> float:
        u = self._u[field]
        if self.totals[field] < self.min_records:
            return u  # too few records to say: an average value
        return (self.counts[field].get(value, 0) + TF_PSEUDO_COUNT) / (self.totals[field] + TF_PSEUDO_COUNT / u)


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
    # P(the record is this candidate's person), the candidates and "someone new" being exclusive
    # (best_matches); None for a lone pair (`MatchModel.score`)
    posterior: float | None = None


@dataclass(frozen=True)
class Thresholds:
    """Match probabilities: at or above `match` the records merge; in [review, match) the pair is
    listed for review. `match` applies to the posterior (best_matches: the candidates and "someone
    new" share the probability); the default, 0.9, kept precision at or above 0.995 on every
    simulated world measured (BENCHMARKS.md, Identity, Offline matching: the lowest threshold
    that did, with both the built-in and the EM parameters); `choose_threshold` picks one from
    the model's own posteriors for a target precision."""

    match: float = 0.9
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
    "first_name": ((0.88, 0.09, 0.015, 0.015), (0.012, 0.0013, 0.007, 0.9797)),
    "last_name": ((0.40, 0.45, 0.08, 0.035, 0.035), (0.0002, 0.0095, 0.002, 0.008, 0.9803)),
    "birthday": ((0.95, 0.03, 0.02), (0.0002, 0.002, 0.9978)),
    "street": ((0.85, 0.10, 0.05), (0.001, 0.01, 0.989)),
    "city": ((0.92, 0.04, 0.04), (0.10, 0.01, 0.89)),
    "postal_code": ((0.85, 0.04, 0.06, 0.02, 0.03), (0.0018, 0.0007, 0.009, 0.017, 0.9715)),
    "state": ((0.95, 0.05), (0.20, 0.80)),
    "phone": ((0.85, 0.05, 0.10), (0.0001, 0.0001, 0.9998)),
    "email_local": ((0.85, 0.05, 0.10), (0.0001, 0.0001, 0.9998)),
}
# λ, the share of all record pairs that are of one person: about (records per person - 1) / records,
# so 1e-4 suits some tens of thousands of records; `estimate` measures it.
_DEFAULT_PRIOR = 1e-4
# u of the household fields (HOUSEHOLD_FIELDS) for two records of different people at one
# dwelling (their streets agree): relatives share a surname, a family e-mail, a landline.
_DEFAULT_HOUSEHOLD_U: dict[str, tuple[float, ...]] = {
    "last_name": (0.05, 0.6, 0.02, 0.02, 0.31),
    "email_local": (0.05, 0.01, 0.94),
    "phone": (0.05, 0.01, 0.94),
}


@dataclass(frozen=True)
class FieldParams:
    m: tuple[float, ...]
    u: tuple[float, ...]


class MatchModel:
    """m and u per field and level, the prior λ (the share of record pairs that are of one
    person) and the veto fields (see DEFAULT_VETOES)."""

    def __init__(self, params: Mapping[str, FieldParams], prior: float,
                 vetoes: Sequence[str] = DEFAULT_VETOES, household: Mapping[str, Sequence[float]] | None = None,
                 priors: Mapping[str, float] | None = None):
        self.params = dict(params)
        self.prior = prior
        # λ per PRIOR_KINDS kind of pair (those not given: `prior`)
        self.priors = {k: float(priors[k]) for k in PRIOR_KINDS if priors and k in priors}
        self.vetoes = tuple(vetoes)
        self.household = {f: tuple(household[f]) if household and f in household else _DEFAULT_HOUSEHOLD_U[f]
                          for f in HOUSEHOLD_FIELDS}
        self._weights = {f: tuple(_log2(m) - _log2(u) for m, u in zip(p.m, p.u, strict=True))
                         for f, p in self.params.items()}
        self._hh_weights = {FIELDS.index(f): tuple(_log2(m) - _log2(u) for m, u in
                                                   zip(self.params[f].m, self.household[f], strict=True))
                            for f in HOUSEHOLD_FIELDS}
        # without term frequencies a `close` name may be two names (María, Marina), so a name's
        # weights are made monotone (`_monotone`: a close name never counts more than an exact
        # one); with them (TF_FREE_CLOSE_FIELDS), a close name is a rare spelling of a common one and
        # counts as EM measured it
        capped = {f: FieldParams(tuple(_monotone(self.params[f].m, self.params[f].u)), self.params[f].u)
                  for f in TF_FREE_CLOSE_FIELDS if f in self.params}
        self._weights_plain = self._weights | {
            f: tuple(_log2(m) - _log2(u) for m, u in zip(p.m, p.u, strict=True)) for f, p in capped.items()}
        self._hh_weights_plain = self._hh_weights | {
            FIELDS.index(f): tuple(_log2(m) - _log2(u) for m, u in zip(p.m, self.household[f], strict=True))
            for f, p in capped.items() if f in HOUSEHOLD_FIELDS}
        self._prior_weight = _log2(prior) - _log2(1 - prior)
        self._kind_weights = tuple(_log2(lam) - _log2(1 - lam) for lam in
                                   (self.priors.get(k, prior) for k in PRIOR_KINDS))
        self._tf_u = {FIELDS.index(f): self.params[f].u[0] if f != "last_name" else self.params[f].u[1]
                      for f in TF_FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MatchModel) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"MatchModel(prior={self.prior:.4g}, weights={self.weights()})"

    # --- configuration ---------------------------------------------------------------------

    @classmethod
    def default(cls) -> MatchModel:
        return cls({f: FieldParams(m, u) for f, (m, u) in _DEFAULT_MU.items()}, _DEFAULT_PRIOR)

    def to_dict(self) -> dict:
        out: dict = {"prior": self.prior}
        if self.priors:
            out["priors"] = dict(self.priors)
        return out | {
            "vetoes": list(self.vetoes),
            "fields": {f: {"m": dict(zip(LEVELS[f], p.m, strict=True)), "u": dict(zip(LEVELS[f], p.u, strict=True))}
                       for f, p in self.params.items()},
            "household": {f: dict(zip(LEVELS[f], u, strict=True)) for f, u in self.household.items()},
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
            if k not in ("prior", "priors", "fields", "vetoes", "household"):
                raise MatchConfigError("unknown setting; known: prior, priors, fields, vetoes, household", field=str(k))
        prior = d.get("prior", _DEFAULT_PRIOR)
        if isinstance(prior, bool) or not isinstance(prior, int | float) or not 0.0 < prior < 1.0:
            raise MatchConfigError("must be a probability strictly between 0 and 1", field="prior")
        kinds = d.get("priors", {})
        if not isinstance(kinds, Mapping):
            raise MatchConfigError(f"must be a mapping of pair kind ({', '.join(PRIOR_KINDS)}) to a probability",
                                   field="priors")
        for k, v in kinds.items():
            if k not in PRIOR_KINDS:
                raise MatchConfigError(f"unknown kind; known: {', '.join(PRIOR_KINDS)}", field=f"priors.{k}")
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 < v < 1.0:
                raise MatchConfigError("must be a probability strictly between 0 and 1", field=f"priors.{k}")
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
        hh = d.get("household", {})
        if not isinstance(hh, Mapping):
            raise MatchConfigError(f"must be a mapping of field ({', '.join(HOUSEHOLD_FIELDS)}) to u per level",
                                   field="household")
        household = {}
        for f, spec in hh.items():
            if f not in HOUSEHOLD_FIELDS:
                raise MatchConfigError(f"unknown field; known: {', '.join(HOUSEHOLD_FIELDS)}", field=f"household.{f}")
            household[f] = _level_probs(spec, f, f"household.{f}")
        return cls(params, float(prior), tuple(vetoes), household, {k: float(v) for k, v in kinds.items()})

    # --- scoring ---------------------------------------------------------------------------

    @property
    def prior_weight(self) -> float:
        """log2(λ / (1 - λ)) of the single prior (`prior`)."""
        return self._prior_weight

    def prior_weight_of(self, a: MatchRecord, b: MatchRecord, term_frequencies: bool = True) -> float:
        """log2(λ / (1 - λ)), the match weight of the pair before any comparison: with term
        frequencies, λ of its kind (PRIOR_KINDS) when the model has one; else the single prior.

        Without term frequencies (or with fewer than TF_MIN_RECORDS counted) the single prior
        only: the kinds raise the odds between two sparse records (a name and a postcode) some
        tenfold, which is safe only when the names' commonness is weighed (María García is many
        people; María and Marina are two names, not a typo). On the simulator's worlds, kinds
        without term frequencies lost precision (0.986 on one world) where kinds with them gained
        recall at the same precision."""
        return self._kind_weights[prior_kind(a, b)] if term_frequencies else self._prior_weight

    def tf_u(self) -> dict[str, float]:
        """Per TF_FIELDS field, the u an average value's agreement has (what `tf` is compared with):
        of `exact`, for the surname of `first` (surnames are counted by the first one)."""
        return {FIELDS[k]: u for k, u in self._tf_u.items()}

    def term_frequencies(self, min_records: int = TF_MIN_RECORDS) -> TermFrequencies:
        """An empty term-frequency table for this model (fed with `add` as records are stored)."""
        return TermFrequencies(TF_FIELDS, u=self.tf_u(), min_records=min_records)

    def weights(self, typo_aware: bool = True) -> dict[str, dict[str, float]]:
        """log2(m/u) per field and level; `typo_aware=False`: as scoring without term frequencies
        weighs them (the TF_FREE_CLOSE_FIELDS made monotone)."""
        ws = self._weights if typo_aware else self._weights_plain
        return {f: dict(zip(LEVELS[f], (round(x, 3) for x in w), strict=True)) for f, w in ws.items()}

    def _contributions(self, levels: Sequence[int], tf_adjust: Mapping[int, float] | None = None,
                       typo_aware: bool = False) -> list[float]:
        """Each field's weight; `typo_aware` when term frequencies weigh (the names' weights as
        EM measured them, else made monotone)."""
        weights, hh_weights = (self._weights, self._hh_weights) if typo_aware else \
            (self._weights_plain, self._hh_weights_plain)
        ws = [0.0 if lv == MISSING else weights[f][lv] for f, lv in zip(FIELDS, levels, strict=True)]
        dwelling = levels[_DWELLING_IX] == 0
        if tf_adjust:
            for k, adj in tf_adjust.items():
                if not (dwelling and k in _HOUSEHOLD_IX):
                    ws[k] += adj
        if dwelling:  # one dwelling: relatives, not strangers, are the alternative
            for k, hw in hh_weights.items():
                if levels[k] != MISSING:
                    ws[k] = hw[levels[k]]
        best = max(_GROUP_IX, key=lambda k: ws[k])
        for k in _GROUP_IX:
            if k != best and ws[k] > 0:
                ws[k] = 0.0
        return ws

    def weight_of(self, levels: Sequence[int], kind: int | None = None) -> float:
        """The match weight of a comparison pattern (level indices in FIELDS order), with the prior
        of the pair kind `kind` (an index in PRIOR_KINDS; None: the single prior)."""
        return (self._prior_weight if kind is None else self._kind_weights[kind]) + sum(self._contributions(levels))

    def tf_adjustments(self, a: MatchRecord, b: MatchRecord, levels: Sequence[int],
                       tf: TermFrequencies) -> dict[int, float]:
        """The term-frequency adjustment (bits) of each TF_FIELDS field that agrees (TF_LEVELS):
        log2(u / tf), u being the field's u of exact agreement (what an average value is worth)
        and tf the value's share of the stored records (the rarer of the two for a fuzzy level:
        the likelihood ratio of a typo'd pair is driven by the rare, typo'd side), within
        ±TF_MAX_BITS. A match on a rare surname counts more than one on "García"; a one-letter
        difference between two common names (María, Mario) counts less than a typo."""
        out = {}
        for f in tf.fields:
            k = FIELDS.index(f)
            lv = levels[k]
            if lv == MISSING or LEVELS[f][lv] not in TF_LEVELS[f]:
                continue
            x, y = tf_value(f, getattr(a, f)), tf_value(f, getattr(b, f))
            t = tf.tf(f, x) if x == y else max(tf.tf(f, x), tf.tf(f, y))
            if x != y and OSA.distance(x, y, score_cutoff=2) == 2:
                src = typo_source(tf, f, x, y)  # both mistyped: the common value's frequency
                if src is not None:
                    t = max(t, tf.tf(f, src))
            adj = _log2(self._tf_u[k]) - _log2(t)
            out[k] = max(-TF_MAX_BITS, min(TF_MAX_BITS, adj))
        return out

    def weight(self, a: MatchRecord, b: MatchRecord, tf: TermFrequencies | None = None) -> float:
        """`score(a, b, tf).weight` alone (cheaper: no comparisons kept)."""
        levels = compare_levels(a, b, tf)
        aware = tf is not None and tf.weighing
        return self.prior_weight_of(a, b, aware) + sum(
            self._contributions(levels, self.tf_adjustments(a, b, levels, tf) if tf is not None else None, aware))

    def score(self, a: MatchRecord, b: MatchRecord, tf: TermFrequencies | None = None) -> MatchScore:
        """The match weight (prior log-odds plus each field's counted weight) and probability.
        A Comparison's weight is what counted: 0 when missing, and 0 for an address field that
        agrees less strongly than another address field (ADDRESS_GROUP); with `tf`, the
        term-frequency adjustment is included (`tf_adjustments`)."""
        levels = compare_levels(a, b, tf)
        aware = tf is not None and tf.weighing
        ws = self._contributions(levels, self.tf_adjustments(a, b, levels, tf) if tf is not None else None, aware)
        comps = tuple(Comparison(f, "missing" if lv == MISSING else LEVELS[f][lv], w)
                      for f, lv, w in zip(FIELDS, levels, ws, strict=True))
        w = self.prior_weight_of(a, b, aware) + sum(ws)
        vetoed = tuple(c.field for c in comps if c.field in self.vetoes and c.level == "different")
        return MatchScore(w, _probability(w), comps, vetoed)

    # --- estimation ------------------------------------------------------------------------

    @classmethod
    def estimate(cls, records: Sequence[MatchRecord], *, max_iter: int = 50, seed: int = 0,
                 random_pairs: int = 50_000, max_block: int = 200, tol: float = 1e-5) -> MatchModel:
        """Parameters learnt from the records alone (no labels), as Splink trains its models.

        - u: the level frequencies over `random_pairs` random pairs (nearly all of different
          people), so u is P(level | two records of different people), whatever blocking does.
          Levels as scoring with term frequencies gives them (counts of all the records).
        - the household u: the level frequencies of HOUSEHOLD_FIELDS over pairs at one dwelling
          (same street and postcode) whose first names differ: two relatives, nearly always.
        - m: EM over the candidate pairs that blocking generates (keys shared by more than
          `max_block` records are skipped), in two sessions so that the fields a block agrees on
          by construction do not drive it: over pairs with the same first and last name, the m of
          every other field; over pairs with the same surname key or initials and postcode, the m
          of the names (address fields left out: people of one household share them). Each
          session: E, the match posterior of each pair from m, u fixed, and the session's λ; M, m
          and λ as posterior-weighted frequencies; until λ moves less than `tol` or `max_iter`.
          The weights are then made monotone (`_monotone`), but for a close name's
          (TF_FREE_CLOSE_FIELDS: it may weigh more than an exact one when scored with term
          frequencies; without, it is capped when scored).
        - the prior λ: the share of all pairs that match, i.e. the expected matches among the
          candidate pairs (EM over λ alone, m and u fixed) over n(n-1)/2. It shrinks as the
          population grows, as it should: a name and a postcode say less among more people.
          The same per kind of pair (PRIOR_KINDS, a kind with MIN_KIND_PAIRS candidate pairs or
          more): its candidate pairs' expected matches over all its pairs. Pairs a veto field
          forbids count as non-matches (scoring never merges them; relatives sharing a family
          e-mail would otherwise inflate λ).

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
        tf = TermFrequencies()  # the levels as scoring with the service's counts gives them
        for r in recs:
            tf.add(r)
        counts_u = [[0.0] * len(LEVELS[f]) for f in FIELDS]
        for _ in range(random_pairs):
            i, j = rng.randrange(n), rng.randrange(n)
            if i == j:
                continue
            for k, lv in enumerate(compare_levels(recs[i], recs[j], tf)):
                if lv != MISSING:
                    counts_u[k][lv] += 1
        u = [np.array(_smooth(c)) for c in counts_u]
        index: dict[str, list[int]] = {}
        for i, r in enumerate(recs):
            for key in blocking_keys(r):
                index.setdefault(key, []).append(i)
            if r.street:  # one dwelling: for the household u only
                index.setdefault(f"dw:{r.street}|{r.postal_code}", []).append(i)

        def pair_set(prefixes: tuple[str, ...]) -> list[tuple[int, int]]:
            out: set[tuple[int, int]] = set()
            for key, ids in index.items():
                if len(ids) < 2 or len(ids) > max_block or not key.startswith(prefixes):
                    continue
                for x in range(len(ids)):
                    for y in range(x + 1, len(ids)):
                        out.add((ids[x], ids[y]))
            return sorted(out)

        def levels_of(pairs: list[tuple[int, int]]) -> np.ndarray:
            if not pairs:
                return np.zeros((0, nf), dtype=np.int8)
            return np.array([compare_levels(recs[i], recs[j], tf) for i, j in pairs], dtype=np.int8)

        def pairs_of(prefixes: tuple[str, ...]) -> np.ndarray:
            return levels_of(pair_set(prefixes))

        m = [np.array(default.params[f].m, dtype=float) for f in FIELDS]
        ix = {f: FIELDS.index(f) for f in FIELDS}
        # the household u: pairs at one dwelling whose first names differ (two people, nearly always)
        hh = {k: np.array(default.household[FIELDS[k]]) for k in _HOUSEHOLD_IX}
        levels = pairs_of(("dw:",))
        if len(levels):
            two = levels[levels[:, ix["first_name"]] == len(LEVELS["first_name"]) - 1]
            for k in _HOUSEHOLD_IX:
                col = two[:, k]
                col = col[col != MISSING]
                if len(col) >= 10:
                    hh[k] = np.array(_smooth(np.bincount(col, minlength=len(LEVELS[FIELDS[k]])).tolist()))
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
                        max_iter=max_iter, tol=tol, hh=hh)
            for k in learn:
                m[k] = sm[k]
                learnt.add(k)
        for k in learnt:
            f = FIELDS[k]  # a close name may count more than an exact one (TF_FREE_CLOSE_FIELDS)
            m[k] = np.array(_monotone(m[k], u[k], LEVELS[f].index("close") if f in TF_FREE_CLOSE_FIELDS else None))
        # the prior: expected matches among all candidate pairs, over all pairs; and the same per
        # kind of pair (PRIOR_KINDS), over the pairs of that kind
        cand = pair_set(_BLOCK_PREFIXES)
        levels = levels_of(cand)
        prior = default.prior

        veto_ix = [ix[f] for f in DEFAULT_VETOES]

        def expected_share(rows: np.ndarray, total: float) -> float:
            patterns, counts = np.unique(rows, axis=0, return_counts=True)
            # a pair a veto field forbids is never a match as scoring decides it (relatives who
            # share a family e-mail and a surname would otherwise count as matches)
            vetoed = np.zeros(len(patterns), dtype=bool)
            for k in veto_ix:
                vetoed |= patterns[:, k] == len(LEVELS[FIELDS[k]]) - 1
            _, lam = _em(patterns, counts.astype(float), m, u, list(range(nf)), [], max_iter=max_iter, tol=tol,
                         hh=hh, never=vetoed)
            return min(max(lam * len(rows) / total, 1e-12), 0.5)

        priors: dict[str, float] = {}
        if len(levels):
            prior = expected_share(levels, n * (n - 1) / 2)
            kinds = np.array([prior_kind(recs[i], recs[j]) for i, j in cand], dtype=np.int8)
            with_street = sum(1 for r in recs if r.street)
            without = n - with_street
            totals = (without * (without - 1) / 2, without * with_street, with_street * (with_street - 1) / 2)
            for k, name in enumerate(PRIOR_KINDS):
                rows = levels[kinds == k]
                if len(rows) >= MIN_KIND_PAIRS:
                    priors[name] = float(f"{expected_share(rows, totals[k]):.6g}")
        params = {}
        for k, f in enumerate(FIELDS):
            if k not in learnt:
                params[f] = default.params[f]
            else:
                params[f] = FieldParams(tuple(round(float(x), 8) for x in m[k]),
                                        tuple(round(float(x), 8) for x in u[k]))
        household = {FIELDS[k]: tuple(round(float(x), 8) for x in hh[k]) for k in _HOUSEHOLD_IX}
        return cls(params, float(f"{prior:.6g}"), household=household, priors=priors)


def _em(patterns, counts, m, u, use: list[int], learn: list[int], *, max_iter: int, tol: float,
        lam: float = 0.1, hh: Mapping[int, object] | None = None, never=None):
    """EM over distinct comparison patterns (rows of level indices) with their counts: the
    likelihood over the fields in `use`; the m of the fields in `learn` and λ re-estimated, u
    fixed (`hh`: the household u of HOUSEHOLD_FIELDS, used where the street agrees, as in
    `MatchModel.score`; `never`: a mask of the patterns taken as non-matches). Returns (m, λ)."""
    import numpy as np

    dwelling = patterns[:, _DWELLING_IX] == 0
    for _ in range(max_iter):
        w = np.zeros(patterns.shape)
        for k in use:
            col = patterns[:, k]
            seen = col != MISSING
            w[seen, k] = np.log(m[k][col[seen]]) - np.log(u[k][col[seen]])
            if hh is not None and k in hh:
                at = seen & dwelling
                w[at, k] = np.log(m[k][col[at]]) - np.log(hh[k][col[at]])
        g_ix = list(_GROUP_IX)
        grp = w[:, g_ix]
        logr = (w.sum(axis=1) - grp.sum(axis=1) + np.clip(grp, None, 0).sum(axis=1)
                + np.clip(grp, 0, None).max(axis=1))
        a = math.log(lam) - math.log(1 - lam) + logr
        g = 1.0 / (1.0 + np.exp(np.clip(-a, -700, 700)))
        if never is not None:
            g[never] = 0.0
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


def _monotone(m, u, free: int | None = None):
    """m adjusted so that the weights log2(m/u) do not rise from one level to the next (a close
    name never counts more than an exact one); the mass taken off goes to the exact level. The
    level `free` (if any) is neither capped nor caps the levels after it."""
    m = [float(x) for x in m]
    for i in range(1, len(m)):
        if i == free:
            continue
        cap = u[i] * min(m[j] / u[j] for j in range(i) if j != free)
        if m[i] > cap:
            m[0] += m[i] - cap
            m[i] = cap
    return m


def _smooth(counts: Sequence[float], alpha: float = 0.5) -> tuple[float, ...]:
    """Level frequencies with a small pseudo-count, so that no probability is 0."""
    total = sum(counts) + alpha * len(counts)
    return tuple((c + alpha) / total for c in counts)


# The levels of a field before it gained one, and how a model saved then maps onto today's: the
# old level's probability is shared between the new levels that split it.
LEGACY_LEVELS: dict[str, tuple[dict[str, tuple[str, ...]], ...]] = {
    # until last_name told two agreeing surnames from the first one: exact covered both
    "last_name": ({"exact": ("exact", "first"), "close": ("close",), "similar": ("similar",),
                   "different": ("different",)},),
    "postal_code": (
        # until postal_code told a typo'd postcode from a neighbouring one: close covered all three
        {"exact": ("exact",), "close": ("typo", "key", "close"), "different": ("different",)},
        # until it told a digit of a neighbouring key from any other: close covered both
        {"exact": ("exact",), "typo": ("typo",), "close": ("key", "close"), "different": ("different",)},
    ),
}


def _legacy(spec: Mapping, f: str) -> Mapping:
    """A level mapping written for one of LEGACY_LEVELS[f], in today's levels (an old level's
    probability shared equally by the levels that split it: the same weight); any other unchanged."""
    for old in LEGACY_LEVELS.get(f, ()):
        if set(spec) != set(old):
            continue
        out: dict[str, object] = {}
        for level, into in old.items():
            v = spec[level]
            for lv in into:
                out[lv] = v / len(into) if isinstance(v, int | float) and not isinstance(v, bool) else v
        return out
    return spec


def _level_probs(spec: object, f: str, where: str) -> tuple[float, ...]:
    if not isinstance(spec, Mapping):
        raise MatchConfigError(f"must map each level ({', '.join(LEVELS[f])}) to a probability", field=where)
    spec = _legacy(spec, f)
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
                 thresholds: Thresholds = Thresholds(), *, size_prior: bool = True,
                 tf: TermFrequencies | None = None, sizes: Mapping[str, int] | None = None) -> tuple[
                     list[tuple[str, MatchScore]], list[tuple[str, MatchScore]]]:
    """(matches, review) among the candidates, each an (id, stored record) pair; an id (a
    profile) may come with several records.

    A candidate's score is its best record's. The hypotheses "the record is candidate k's
    person" and "the record is someone new" exclude each other, so the posterior of candidate k
    is odds_k / (1 + Σ odds_j) with odds_k = 2^weight_k: two namesakes who both match well
    share the probability and neither merges (a miss beats a wrong merge). When the likeliest
    candidate does not reach `thresholds.match` alone, it gets the posterior of the others in
    the measure they may be its person (`_shared_posteriors`: two profiles of one person not
    merged yet; namesakes a veto field tells apart share nothing). With `size_prior`
    a candidate with n records gets n times the prior odds (a Chinese-restaurant-process
    prior: people who left many records are likelier to leave the next one); n is `sizes[id]`
    when given, else the number of records the candidate came with. With `tf`, term frequencies
    adjust the weights (`MatchModel.score`).

    `matches`: the candidates whose posterior is at least `thresholds.match` and that no veto
    field forbids (at most one when the threshold is above 0.5); `review`: the others whose
    pairwise probability is at least `thresholds.review`. Both best first; ties broken by id,
    so the order is deterministic. Each score carries its `posterior`."""
    best: dict[str, tuple[float, MatchRecord]] = {}
    seen: dict[str, int] = {}
    for cid, other in candidates:
        w = model.weight(rec, other, tf)
        seen[cid] = seen.get(cid, 0) + 1
        cur = best.get(cid)
        if cur is None or w > cur[0]:
            best[cid] = (w, other)
    if not best:
        return [], []
    n = {c: max(seen[c], int(sizes.get(c, 0))) for c in best} if sizes is not None else seen
    logs = {c: w + (math.log2(n[c]) if size_prior else 0.0) for c, (w, _) in best.items()}
    # log-sum-exp in base 2, shifted so that nothing overflows
    scale = max(max(logs.values()), 0.0)
    total = 2.0 ** -scale + sum(2.0 ** (w - scale) for w in logs.values())
    review_weight = math.log2(thresholds.review) - math.log2(1.0 - thresholds.review) \
        if thresholds.review < 1.0 else math.inf
    posts = {c: 2.0 ** (logs[c] - scale) / total for c in best}
    if len(posts) > 1 and max(posts.values()) < thresholds.match <= sum(posts.values()):
        posts = _shared_posteriors(model, best, posts, tf)
    scored = {}
    for c, (w, other) in best.items():
        post = posts[c]
        if post >= thresholds.match or w >= review_weight - 1e-9:  # the others are not returned
            scored[c] = replace(model.score(rec, other, tf), posterior=post)
    ranked = sorted(scored.items(), key=lambda kv: (-kv[1].weight, kv[0]))
    matches = [(c, s) for c, s in ranked if s.posterior >= thresholds.match and not s.vetoed]
    chosen = {c for c, _ in matches}
    review = [(c, s) for c, s in ranked if c not in chosen and s.probability >= thresholds.review]
    return matches, review


SHARED_MIN_POSTERIOR = 0.01  # candidates below this posterior are not checked for being one person


def _shared_posteriors(model: MatchModel, best: Mapping[str, tuple[float, MatchRecord]],
                       posts: Mapping[str, float], tf: TermFrequencies | None) -> dict[str, float]:
    """The posteriors when the likeliest candidate k may be the same person as another candidate
    j (two profiles of one person not merged yet: a till receipt with a typo'd postcode beside
    the CRM contact it belongs to): the record is k's person if it is k's, or if it is j's and j
    is k's person too, so P(k) = p_k + Σ_j q_kj p_j, q_kj being the probability of the pair of
    k's and j's best records (0 when a veto field forbids it: namesakes told apart by their
    birthdays). Exclusive hypotheses alone split the record's probability between two profiles
    of one person, and neither reaches the threshold. Only k's posterior changes, so at most one
    candidate reaches a threshold above 0.5. Candidates below SHARED_MIN_POSTERIOR are left out."""
    k = min(posts, key=lambda c: (-posts[c], -best[c][0], c))
    out = dict(posts)
    for j, p in posts.items():
        if j == k or p < SHARED_MIN_POSTERIOR:
            continue
        sc = model.score(best[k][1], best[j][1], tf)
        if not sc.vetoed:
            out[k] += sc.probability * p
    out[k] = min(out[k], 1.0)
    return out


def choose_threshold(decisions: Iterable[tuple[float, int]], target_precision: float = 0.995, *,
                     floor: float = 0.5) -> float:
    """The lowest match threshold whose expected precision, by the model's own posteriors, is at
    least `target_precision`: no labels needed. `decisions` holds, for each record matched so
    far (or in a dry run), the posterior of its best candidate and the number of records of that
    candidate (the pairs a merge would create, each wrong with probability 1 - posterior).
    Merging every decision at or above t is expected to create Σ n(1 - p) wrong pairs among
    Σ n; the lowest such t, not below `floor`, is returned (1.0 when no decision qualifies).
    As good as the model's calibration: check it on labelled data (the accuracy benchmark)."""
    if isinstance(target_precision, bool) or not isinstance(target_precision, int | float) \
            or not 0.5 <= target_precision < 1.0:
        raise MatchConfigError("must be a probability in [0.5, 1)", field="target_precision")
    by_p: dict[float, int] = {}
    for p, n in decisions:
        if n > 0 and float(p) >= floor:
            by_p[float(p)] = by_p.get(float(p), 0) + int(n)
    best = 1.0
    pairs = wrong = 0.0
    for p in sorted(by_p, reverse=True):  # a threshold takes every decision at its value at once
        pairs += by_p[p]
        wrong += by_p[p] * (1.0 - p)
        if 1.0 - wrong / pairs < target_precision:
            break
        best = p
    return best


__all__ = [
    "FIELDS", "LEVELS", "PRIOR_KINDS", "TF_FIELDS", "Comparison", "MatchConfigError", "MatchModel",
    "MatchRecord", "MatchScore", "TermFrequencies", "Thresholds", "best_matches", "blocking_keys",
    "choose_threshold", "compare_levels", "prior_kind", "record_from_traits",
]
