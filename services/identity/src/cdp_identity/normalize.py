"""Identifier types and the canonical form of identifier values. Pure: no I/O.

Built-in types are user_id, anonymous_id, email, phone and device_id; further types
(crm_id, loyalty_id, …) are declared in configuration with an `IdentifierTypes` registry.

- email: `email-validator` (syntax only, no DNS), trimmed; the normalized address
  (Unicode NFC, IDNA domains in Unicode form) lower-cased as a whole. Invalid → None.
- phone: `phonenumbers`, formatted as E.164. A number without a country code is read in
  the default region (`DEFAULT_REGION`, "US", until settings provide one). A number
  that cannot be parsed or is not a valid number for its region → None.
- any other type: trimmed, case kept.
- every type: empty after trimming, longer than `MAX_LENGTH` characters, or containing a
  NUL character (PostgreSQL text cannot store it) → None.

`check` says why a value is rejected (`InvalidIdentifier.reason`, never the value itself:
it may be personal data); `normalize` returns None instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email

BUILTIN_TYPES: tuple[str, ...] = ("user_id", "anonymous_id", "email", "phone", "device_id")
CUSTOM_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
MAX_LENGTH = 512
DEFAULT_REGION = "US"
CACHE_SIZE = 65_536


class InvalidIdentifier(ValueError):
    """A value that is not a usable identifier; `reason` says why without quoting it."""

    def __init__(self, type_: str, reason: str):
        super().__init__(f"{type_}: {reason}")
        self.type = type_
        self.reason = reason


@dataclass(frozen=True, init=False)
class IdentifierTypes:
    """The identifier types in use: the built-in ones plus custom ones from configuration."""

    custom: tuple[str, ...] = field(default=())

    def __init__(self, custom: list[str] | tuple[str, ...] = ()):
        names = tuple(custom)
        seen: set[str] = set()
        for i, name in enumerate(names):
            where = f"custom[{i}]"
            if not isinstance(name, str) or not CUSTOM_TYPE_NAME.match(name):
                raise ValueError(f"{where}: an identifier type name is 2 to 32 characters of a-z, 0-9 and _, "
                                 "starting with a letter")
            if name in BUILTIN_TYPES:
                raise ValueError(f"{where}: {name} is a built-in type")
            if name in seen:
                raise ValueError(f"{where}: {name} is declared twice")
            seen.add(name)
        object.__setattr__(self, "custom", names)

    @property
    def all(self) -> tuple[str, ...]:
        return BUILTIN_TYPES + self.custom

    def __contains__(self, type_: object) -> bool:
        return type_ in BUILTIN_TYPES or type_ in self.custom


DEFAULT_TYPES = IdentifierTypes()


def check_region(region: str) -> str:
    """The region itself when phonenumbers knows it (an ISO 3166 alpha-2 code), else ValueError."""
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown phone region {region!r}: use an ISO 3166-1 alpha-2 code such as US or ES")
    return region


@lru_cache(maxsize=CACHE_SIZE)
def _email(v: str) -> str | None:
    try:
        return validate_email(v, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


@lru_cache(maxsize=CACHE_SIZE)
def _phone(v: str, region: str) -> str | None:
    try:
        n = phonenumbers.parse(v, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(n):
        return None
    return phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)


def check(type_: str, value: str, *, default_region: str = DEFAULT_REGION,
          types: IdentifierTypes = DEFAULT_TYPES) -> str:
    """The canonical form of `value` as an identifier of `type_`, or InvalidIdentifier."""
    if type_ not in types:
        raise InvalidIdentifier(type_, "unknown identifier type")
    if not isinstance(value, str):
        raise InvalidIdentifier(type_, "is not a string")
    v = value.strip()
    if not v:
        raise InvalidIdentifier(type_, "is empty")
    if len(v) > MAX_LENGTH:
        raise InvalidIdentifier(type_, f"is longer than {MAX_LENGTH} characters")
    if "\x00" in v:
        raise InvalidIdentifier(type_, "contains a NUL character")
    if type_ == "email":
        n = _email(v)
        if n is None:
            raise InvalidIdentifier(type_, "is not a valid email address")
        return n
    if type_ == "phone":
        n = _phone(v, check_region(default_region))
        if n is None:
            raise InvalidIdentifier(type_, f"is not a valid phone number (default region {default_region})")
        return n
    return v


def normalize(type_: str, value: str, *, default_region: str = DEFAULT_REGION,
              types: IdentifierTypes = DEFAULT_TYPES) -> str | None:
    """The canonical form of `value` as an identifier of `type_`, or None when it is not one."""
    try:
        return check(type_, value, default_region=default_region, types=types)
    except InvalidIdentifier:
        return None
