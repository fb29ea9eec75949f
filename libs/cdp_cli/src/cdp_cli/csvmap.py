"""CSV mapping files: which column is which identifier, trait, event property or product
field, with types and timestamp formats (docs/connectors.md), and the rows of a CSV file
turned into Segment JSON calls, one record at a time, with the byte offset after each.

```yaml
kind: identify                    # or: track (with event:)
columns:
  Contact ID: {to: anonymous_id, prefix: "crm:"}
  Email: email                    # short form: the target only
  Birthday: {to: trait.birthday, type: date, format: "%d/%m/%Y"}
  Zip: trait.address.postalCode
  Updated: {to: timestamp, format: "%Y-%m-%d %H:%M:%S", timezone: Europe/Berlin}
```
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

IDENTIFIERS = ("user_id", "anonymous_id", "email", "phone", "device_id")
CUSTOM = "identifier."  # identifier.<type>: a custom identifier type declared in identity's rules (crm_id, ...)
CUSTOM_TYPE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
TYPES = ("string", "int", "float", "bool", "date", "datetime")
PREFIXES = ("trait.", "property.", "product.", "context.")
DEFAULT_NULLS = ("", "NULL", "null", "N/A")
TRUE = {"true", "t", "yes", "y", "1"}
FALSE = {"false", "f", "no", "n", "0"}
_NS = uuid.UUID("0b6c7c1e-8a55-4f0c-a3f9-5b0c4d1e2f30")
# Segment's reserved traits (identify) and the common e-commerce names, for a hint on typos
RESERVED_TRAITS = ("address", "age", "avatar", "birthday", "company", "createdAt", "description", "email",
                   "firstName", "gender", "id", "lastName", "name", "phone", "title", "username", "website")


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the key."""


class RowError(ValueError):
    """A row that cannot be mapped; the message names the column."""


@dataclass(frozen=True)
class Column:
    name: str
    to: str
    type: str = "string"
    format: str = ""
    tz: Any = UTC
    prefix: str = ""
    required: bool = False


@dataclass
class Mapping:
    kind: str
    event: str = ""
    columns: list[Column] = field(default_factory=list)
    nulls: frozenset[str] = frozenset(DEFAULT_NULLS)
    group_by: str = ""
    id_columns: list[str] = field(default_factory=list)
    anonymous_from: str = ""  # a row with no identifier gets an anonymousId derived from this column
    delimiter: str = ","
    encoding: str = "utf-8"
    fingerprint: str = ""  # sha256 of the mapping file

    def check_header(self, header: list[str]) -> None:
        missing = [c for c in [*(c.name for c in self.columns), *self.id_columns,
                               *([self.group_by] if self.group_by else []),
                               *([self.anonymous_from] if self.anonymous_from else [])]
                   if c not in header]
        if missing:
            raise MappingError(f"columns not in the CSV header: {', '.join(sorted(set(missing)))} "
                               f"(header: {', '.join(header)})")


def _column(name: str, spec: Any) -> Column:
    where = f"columns.{name}"
    if isinstance(spec, str):
        spec = {"to": spec}
    if not isinstance(spec, dict):
        raise MappingError(f"{where}: must be a target (e.g. trait.firstName) or an object with `to:`")
    unknown = set(spec) - {"to", "type", "format", "timezone", "prefix", "required"}
    if unknown:
        raise MappingError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    to = spec.get("to")
    if not isinstance(to, str) or not to:
        raise MappingError(f"{where}.to: is required")
    if to.startswith(CUSTOM):
        if not CUSTOM_TYPE.match(to[len(CUSTOM):]) or to[len(CUSTOM):] in IDENTIFIERS:
            raise MappingError(f"{where}.to: {to!r}: a custom identifier type is 2-32 characters of a-z, 0-9 and _ "
                               "(declared in identity's rules: identifier_types); built-in types are targets by name")
    elif not (to in IDENTIFIERS or to == "timestamp" or (to.startswith(PREFIXES) and len(to.split(".", 1)[1]) > 0)):
        raise MappingError(f"{where}.to: {to!r} is not a target; use one of {', '.join(IDENTIFIERS)}, timestamp, "
                           "identifier.<custom type>, trait.<name>, property.<name>, product.<name>, context.<name>")
    typ = spec.get("type") or ("datetime" if to == "timestamp" else "string")
    if typ not in TYPES:
        raise MappingError(f"{where}.type: must be one of {', '.join(TYPES)}")
    if to == "timestamp" and typ != "datetime":
        raise MappingError(f"{where}.type: a timestamp column is a datetime")
    if (to in IDENTIFIERS or to.startswith(CUSTOM)) and typ != "string":
        raise MappingError(f"{where}.type: identifiers are strings")
    fmt = spec.get("format") or ""
    if not isinstance(fmt, str):
        raise MappingError(f"{where}.format: must be a string")
    tz: Any = UTC
    if spec.get("timezone"):
        try:
            tz = ZoneInfo(str(spec["timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            raise MappingError(f"{where}.timezone: unknown time zone {spec['timezone']!r}") from None
    prefix = spec.get("prefix") or ""
    if prefix and not (to in IDENTIFIERS or to.startswith(CUSTOM)):
        raise MappingError(f"{where}.prefix: only identifiers take a prefix")
    return Column(name, to, typ, fmt, tz, str(prefix), bool(spec.get("required", False)))


def parse_mapping(text: str, *, where: str = "mapping") -> Mapping:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise MappingError(f"{where} is not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise MappingError(f"{where} must be a YAML object with kind: and columns:")
    unknown = set(doc) - {"kind", "event", "columns", "null_values", "group_by", "id_columns", "anonymous_from",
                          "delimiter", "encoding"}
    if unknown:
        raise MappingError(f"unknown keys {', '.join(sorted(unknown))}")
    kind = doc.get("kind")
    if kind not in ("identify", "track"):
        raise MappingError("kind: must be identify (e.g. CRM contacts) or track (e.g. POS transactions)")
    event = doc.get("event") or ""
    if kind == "track" and (not isinstance(event, str) or not event.strip()):
        raise MappingError('event: a track mapping names its event, e.g. event: "Order Completed"')
    if kind == "identify" and event:
        raise MappingError("event: only a track mapping has an event")
    cols = doc.get("columns")
    if not isinstance(cols, dict) or not cols:
        raise MappingError("columns: must map each CSV column to a target")
    columns = [_column(str(name), spec) for name, spec in cols.items()]
    for c in columns:
        if kind == "identify" and c.to.startswith(("property.", "product.")):
            raise MappingError(f"columns.{c.name}.to: an identify mapping has traits, not {c.to.split('.')[0]}s")
    if sum(c.to == "timestamp" for c in columns) > 1:
        raise MappingError("columns: at most one timestamp column")
    group_by = doc.get("group_by") or ""
    if group_by and kind != "track":
        raise MappingError("group_by: only a track mapping groups rows (one product per row)")
    id_columns = doc.get("id_columns") or []
    if not isinstance(id_columns, list) or not all(isinstance(c, str) for c in id_columns):
        raise MappingError("id_columns: must be a list of column names")
    anonymous_from = doc.get("anonymous_from") or ""
    if not isinstance(anonymous_from, str):
        raise MappingError("anonymous_from: must be a column name")
    nulls = doc.get("null_values", list(DEFAULT_NULLS))
    if not isinstance(nulls, list):
        raise MappingError("null_values: must be a list of strings")
    delimiter = doc.get("delimiter") or ","
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise MappingError("delimiter: must be one character")
    return Mapping(kind=kind, event=event.strip() if isinstance(event, str) else "", columns=columns,
                   nulls=frozenset(str(n) for n in nulls), group_by=str(group_by), id_columns=list(id_columns),
                   anonymous_from=anonymous_from, delimiter=delimiter, encoding=str(doc.get("encoding") or "utf-8"),
                   fingerprint=hashlib.sha256(text.encode()).hexdigest())


def load_mapping(path: str | Path) -> Mapping:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise MappingError(f"cannot read {p}: {e.strerror}") from None
    return parse_mapping(text, where=str(p))


# --- values --------------------------------------------------------------------------


def _datetime(value: str, c: Column) -> str:
    fmt = c.format or "iso"
    try:
        if fmt == "iso":
            dt = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
        elif fmt in ("unix", "unix_ms"):
            n = float(value)
            dt = datetime.fromtimestamp(n / 1000 if fmt == "unix_ms" else n, UTC)
        else:
            dt = datetime.strptime(value, fmt)
    except (ValueError, OverflowError, OSError):
        raise RowError(f"column {c.name!r}: {value!r} does not match the format {fmt!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=c.tz)
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def convert(value: str, c: Column) -> Any:
    """A cell's value in its column's type (RowError naming the column when it is not)."""
    try:
        if c.type == "string":
            return value
        if c.type == "int":
            return int(value.replace("_", ""))
        if c.type == "float":
            f = float(value)
            if f != f or f in (float("inf"), float("-inf")):
                raise ValueError
            return f
        if c.type == "bool":
            v = value.strip().lower()
            if v in TRUE:
                return True
            if v in FALSE:
                return False
            raise ValueError
        if c.type == "date":
            if c.format:
                return datetime.strptime(value, c.format).date().isoformat()
            return date.fromisoformat(value).isoformat()
        return _datetime(value, c)
    except RowError:
        raise
    except ValueError:
        hint = f" with the format {c.format!r}" if c.format else ""
        raise RowError(f"column {c.name!r}: {value!r} is not a {c.type}{hint}") from None


def _put(obj: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        nxt = obj.get(p)
        if not isinstance(nxt, dict):
            nxt = obj[p] = {}
        obj = nxt
    obj[parts[-1]] = value


def _hash(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "\x1f".join(parts)))


def message_id(source: str, kind: str, content: Any) -> str:
    """Deterministic messageId of a row's content, so a re-import is the same event."""
    return "imp-" + _hash(source, kind, json.dumps(content, ensure_ascii=False, separators=(",", ":"),
                                                   sort_keys=isinstance(content, dict)))


def anonymous_id_of(source: str, id_type: str, value: str) -> str:
    """A stable anonymousId for a row known only by email/phone/device (hashed: no PII in ids)."""
    norm = value.strip().lower() if id_type == "email" else value.strip()
    return f"{source}:{id_type}:" + hashlib.sha256(norm.encode()).hexdigest()[:32]


class RowMapper:
    """Maps rows (lists of cells, in header order) to Segment JSON calls."""

    def __init__(self, mapping: Mapping, header: list[str], source: str):
        mapping.check_header(header)
        self.m, self.source = mapping, source
        self.index = {name: i for i, name in enumerate(header)}
        self.cols = [(self.index[c.name], c) for c in mapping.columns]
        self.id_idx = [self.index[c] for c in mapping.id_columns]
        self.group_idx = self.index[mapping.group_by] if mapping.group_by else None
        self.anon_idx = self.index[mapping.anonymous_from] if mapping.anonymous_from else None

    def _cell(self, row: list[str], i: int) -> str | None:
        v = row[i].strip() if i < len(row) else ""
        return None if v in self.m.nulls else v

    def values(self, row: list[str]) -> list[tuple[Column, Any]]:
        out = []
        for i, c in self.cols:
            v = self._cell(row, i)
            if v is None:
                if c.required:
                    raise RowError(f"column {c.name!r}: is required and empty")
                continue
            out.append((c, convert(v, c)))
        return out

    def group_key(self, row: list[str]) -> str | None:
        return None if self.group_idx is None else (row[self.group_idx] if self.group_idx < len(row) else "")

    def call(self, rows: list[list[str]]) -> dict:
        """The call of one row (or of the consecutive rows of one group: one product each)."""
        m = self.m
        call: dict = {"type": m.kind}
        if m.kind == "track":
            call["event"] = m.event
        ids: dict[str, str] = {}
        bag: dict = {}  # traits (identify) or properties (track)
        context: dict = {}
        ctx_traits: dict = {}
        products: list[dict] = []
        for n, row in enumerate(rows):
            product: dict = {}
            for c, v in self.values(row):
                if c.to.startswith("product."):
                    _put(product, c.to[len("product."):], v)
                    continue
                if n > 0:
                    continue  # the first row of a group gives everything but its products
                if c.to in IDENTIFIERS:
                    ids[c.to] = c.prefix + v
                elif c.to.startswith(CUSTOM):
                    ids[c.to[len(CUSTOM):]] = c.prefix + v
                elif c.to == "timestamp":
                    call["timestamp"] = v
                elif c.to.startswith("context."):
                    _put(context, c.to[len("context."):], v)
                else:
                    _put(bag, c.to.split(".", 1)[1], v)
            if product:
                products.append(product)
        if ids.get("user_id"):
            call["userId"] = ids["user_id"]
        if ids.get("anonymous_id"):
            call["anonymousId"] = ids["anonymous_id"]
        extra = [(t, ids[t]) for t in ("email", "phone", "device_id") if ids.get(t)]
        extra += sorted((t, v) for t, v in ids.items() if t not in IDENTIFIERS and v)
        if extra:
            call["identifiers"] = [{"type": t, "value": v} for t, v in extra]
            if "userId" not in call and "anonymousId" not in call:
                call["anonymousId"] = anonymous_id_of(self.source, *extra[0])
        if "userId" not in call and "anonymousId" not in call and self.anon_idx is not None:
            v = rows[0][self.anon_idx].strip() if self.anon_idx < len(rows[0]) else ""
            if v and v not in m.nulls:  # known only by what the row says (e.g. a name): identity may match it
                call["anonymousId"] = anonymous_id_of(self.source, m.anonymous_from, v)
        for t in ("email", "phone"):
            if ids.get(t):
                (bag if m.kind == "identify" else ctx_traits).setdefault(t, ids[t])
        if ids.get("device_id"):
            context.setdefault("device", {})["id"] = ids["device_id"]
        if products:
            bag["products"] = products
        if ctx_traits:  # merged into any context.traits.* the mapping set, which win
            context["traits"] = {**ctx_traits, **context.get("traits", {})}
        context["library"] = {"name": "cdp-import", "version": "1"}
        call["traits" if m.kind == "identify" else "properties"] = bag
        call["context"] = context
        if self.id_idx:
            content: Any = [[r[i] if i < len(r) else "" for i in self.id_idx] for r in rows]
        else:
            content = rows
        call["messageId"] = message_id(self.source, m.kind + ":" + m.event, content)
        return call


# --- reading -------------------------------------------------------------------------


class _Lines:
    """Decoded lines of a binary file, with the byte offset after the last line handed out
    (csv.reader pulls lines only as it needs them, so after each record this is the end of
    that record)."""

    def __init__(self, f: BinaryIO, offset: int, encoding: str):
        self.f, self.offset, self.encoding = f, offset, encoding

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.f.readline()
        if not line:
            raise StopIteration
        self.offset += len(line)
        try:
            return line.decode(self.encoding)
        except UnicodeDecodeError as e:
            raise RowError(f"bytes at offset {self.offset - len(line) + e.start} are not {self.encoding}") from None


@dataclass
class Item:
    """One call (or one unmappable record) and where it ends in the file."""

    first_row: int
    last_row: int
    end: int
    call: dict | None = None
    error: str = ""


def read_header(f: BinaryIO, mapping: Mapping) -> tuple[list[str], int]:
    """The header and the offset of the first data record."""
    f.seek(0)
    start = 3 if f.read(3) == b"\xef\xbb\xbf" else 0
    f.seek(start)
    lines = _Lines(f, start, mapping.encoding)
    try:
        header = next(csv.reader(lines, delimiter=mapping.delimiter))
    except StopIteration:
        raise MappingError("the CSV file is empty (no header)") from None
    return [h.strip() for h in header], lines.offset


def csv_items(f: BinaryIO, mapping: Mapping, source: str, *, offset: int | None = None,
              row: int = 0) -> Iterator[Item]:
    """The calls of a CSV file from `offset` (default: after the header); `row` is the number
    of data rows before it. Groups (group_by) never straddle a returned item's end."""
    header, data_start = read_header(f, mapping)
    mapper = RowMapper(mapping, header, source)
    start = data_start if offset is None else max(offset, data_start)
    f.seek(start)
    lines = _Lines(f, start, mapping.encoding)
    reader = csv.reader(lines, delimiter=mapping.delimiter)
    group: list[list[str]] = []
    group_first = group_end = 0
    key: str | None = None

    def flush() -> Item:
        try:
            return Item(group_first, row_before, group_end, call=mapper.call(group))
        except RowError as e:
            return Item(group_first, row_before, group_end, error=str(e))

    row_before = row
    while True:
        record_start = lines.offset
        try:
            record = next(reader)
        except StopIteration:
            break
        except (RowError, csv.Error) as e:
            if group:
                yield flush()
                group = []
            row += 1
            row_before = row
            yield Item(row, row, lines.offset, error=str(e))
            continue
        if not record or all(not c.strip() for c in record):
            continue  # blank line
        row += 1
        k = mapper.group_key(record)
        if group and (k is None or k != key):
            row_before = row - 1
            group_end = record_start
            yield flush()
            group = []
        if not group:
            group_first, key = row, k
        group.append(record)
        group_end = lines.offset
        row_before = row
    if group:
        yield flush()
