"""`cdp import events FILE.jsonl` and `cdp import csv --source NAME --map MAPPING.yaml FILE.csv`.

Files are read as a stream (never whole), turned into Segment JSON calls (csvmap for CSV),
converted to `cdp.ingest.v1.Call`s and sent through the client-streaming
`IngestService/ImportEvents` in chunks of up to 500 calls (and 3 MiB). Every SEGMENT calls
the stream is closed and ingest's answer awaited: those calls are then durable (or kept in
ingest's failed events), and a checkpoint in `.cdp/imports/` records the byte offset after
them. An interrupted import restarts from there; calls re-sent after a crash are the same
events, because each has a messageId derived from its content (ingest's event id is
uuid5(source, messageId), so a duplicate is dropped by JetStream and by identity).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from cdp.common.v1 import identifier_pb2
from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc

from . import client, csvmap

CHUNK_CALLS = 500
CHUNK_BYTES = 3 * 1024 * 1024  # below gRPC's 4 MiB message limit
SEGMENT_CALLS = 5000  # calls per ImportEvents stream: the checkpoint granularity
MAX_SHOWN = 20
MAX_RETRIES = 8
IMPORTS_DIR = "imports"
KINDS = ("track", "identify", "page", "screen", "group", "alias")
COMMON_KEYS = {"messageId": "message_id", "userId": "user_id", "anonymousId": "anonymous_id"}


# --- Segment JSON -> proto -----------------------------------------------------------


def _timestamp(value: Any, where: str) -> Timestamp:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: must be an ISO-8601 date-time string")
    try:
        dt = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    except ValueError:
        raise ValueError(f"{where}: is not an ISO-8601 date-time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ts = Timestamp()
    ts.FromDatetime(dt.astimezone(UTC))
    return ts


def _json_text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, dict):
        raise ValueError(f"{where}: must be a JSON object")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{where}: must be a string")
    return str(value)


def call_to_proto(obj: Any) -> ingest_pb2.Call:
    """One Segment JSON call (as the HTTP API takes it) -> `cdp.ingest.v1.Call`.

    JSON fields (properties, traits, context, integrations) become JSON text. Validation of
    values (ids present, limits) is ingest's; this raises ValueError only for what cannot be
    expressed in the proto (a wrong type, an unknown call type, a bad timestamp)."""
    if not isinstance(obj, dict):
        raise ValueError("a call must be a JSON object")
    kind = obj.get("type") or obj.get("action")
    if kind not in KINDS:
        raise ValueError(f"type: must be one of {', '.join(KINDS)}")
    common = ingest_pb2.EventCommon(
        **{attr: _text(obj.get(key), key) for key, attr in COMMON_KEYS.items()},
        context_json=_json_text(obj.get("context"), "context"),
        integrations_json=_json_text(obj.get("integrations"), "integrations"),
    )
    if obj.get("timestamp") is not None:
        common.timestamp.CopyFrom(_timestamp(obj["timestamp"], "timestamp"))
    ids = obj.get("identifiers") or []
    if not isinstance(ids, list):
        raise ValueError("identifiers: must be a list of {type, value}")
    for i, ident in enumerate(ids):
        if not isinstance(ident, dict):
            raise ValueError(f"identifiers[{i}]: must be an object with type and value")
        common.identifiers.append(identifier_pb2.Identifier(type=_text(ident.get("type"), f"identifiers[{i}].type"),
                                                            value=_text(ident.get("value"), f"identifiers[{i}].value")))
    call = ingest_pb2.Call()
    if kind == "track":
        call.track.CopyFrom(ingest_pb2.TrackRequest(common=common, event=_text(obj.get("event"), "event"),
                                                    properties_json=_json_text(obj.get("properties"), "properties")))
    elif kind == "identify":
        call.identify.CopyFrom(ingest_pb2.IdentifyRequest(common=common,
                                                          traits_json=_json_text(obj.get("traits"), "traits")))
    elif kind in ("page", "screen"):
        req = (ingest_pb2.PageRequest if kind == "page" else ingest_pb2.ScreenRequest)(
            common=common, name=_text(obj.get("name"), "name"), category=_text(obj.get("category"), "category"),
            properties_json=_json_text(obj.get("properties"), "properties"))
        getattr(call, kind).CopyFrom(req)
    elif kind == "group":
        call.group.CopyFrom(ingest_pb2.GroupRequest(common=common, group_id=_text(obj.get("groupId"), "groupId"),
                                                    traits_json=_json_text(obj.get("traits"), "traits")))
    else:
        call.alias.CopyFrom(ingest_pb2.AliasRequest(common=common,
                                                    previous_id=_text(obj.get("previousId"), "previousId")))
    return call


# --- JSONL ---------------------------------------------------------------------------


def jsonl_items(f, source: str, *, offset: int = 0, row: int = 0) -> Iterator[csvmap.Item]:
    """The calls of a JSON-lines file (one Segment call per line) from `offset`. A line
    without a messageId gets one derived from its content."""
    f.seek(offset)
    for raw in iter(f.readline, b""):
        offset += len(raw)
        line = raw.strip()
        if not line:
            continue
        row += 1
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            yield csvmap.Item(row, row, offset, error=f"not valid JSON ({getattr(e, 'msg', e)})")
            continue
        except RecursionError:
            yield csvmap.Item(row, row, offset, error="nested too deeply")
            continue
        if isinstance(obj, dict) and not obj.get("messageId"):
            obj["messageId"] = csvmap.message_id(source, "jsonl", obj)
        yield csvmap.Item(row, row, offset, call=obj)


# --- checkpoints ---------------------------------------------------------------------


@dataclass
class Checkpoint:
    """How far an import of one file (same path, size and mtime) has been acknowledged."""

    file: str
    size: int
    mtime_ns: int
    fingerprint: str  # what the calls depend on: kind of import, source, mapping
    offset: int = 0  # bytes of the file fully acknowledged (None-like 0: from the start)
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    skipped: int = 0  # rows that could not be mapped (never sent)
    updated_at: str = ""
    path: str = field(default="", compare=False)

    @staticmethod
    def key(file: Path) -> str:
        st = file.stat()
        return hashlib.sha256(f"{file.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32]

    @classmethod
    def open(cls, file: Path, fingerprint: str, state_dir: Path, *, restart: bool = False) -> tuple[Checkpoint, bool]:
        """(checkpoint, resumed): the saved one when it matches, else a fresh one."""
        st = file.stat()
        path = state_dir / IMPORTS_DIR / f"{cls.key(file)}.json"
        fresh = cls(str(file.resolve()), st.st_size, st.st_mtime_ns, fingerprint, path=str(path))
        if restart:
            return fresh, False
        try:
            saved = json.loads(path.read_text())
            cp = cls(**{k: v for k, v in saved.items() if k != "path"}, path=str(path))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return fresh, False
        if (cp.file, cp.size, cp.mtime_ns, cp.fingerprint) != (fresh.file, fresh.size, fresh.mtime_ns, fingerprint):
            return fresh, False
        return cp, cp.offset > 0

    def save(self) -> None:
        p = Path(self.path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self.updated_at = datetime.now(UTC).isoformat()
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, p)

    def clear(self) -> None:
        Path(self.path).unlink(missing_ok=True)


# --- sending -------------------------------------------------------------------------


@dataclass
class Rejection:
    row: int
    error: str
    failed_event_id: int = 0  # kept in ingest's failed events (0: refused here, never sent)


@dataclass
class Summary:
    file: str
    source: str
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    skipped: int = 0
    resumed_from_row: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rejections"] = [asdict(r) for r in self.rejections]
        return d


@dataclass
class Segment:
    calls: list[ingest_pb2.Call] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # the first row of each call
    skipped: list[Rejection] = field(default_factory=list)
    end: int = 0
    last_row: int = 0


def segments(items: Iterator[csvmap.Item], size: int | None = None) -> Iterator[Segment]:
    """Items gathered into segments of `size` calls (default SEGMENT_CALLS), each one stream."""
    size = size or SEGMENT_CALLS
    seg = Segment()
    for item in items:
        seg.end, seg.last_row = item.end, item.last_row
        if item.error:
            seg.skipped.append(Rejection(item.first_row, item.error))
        else:
            try:
                seg.calls.append(call_to_proto(item.call))
                seg.rows.append(item.first_row)
            except ValueError as e:
                seg.skipped.append(Rejection(item.first_row, str(e)))
        if len(seg.calls) >= size:
            yield seg
            seg = Segment()
    if seg.calls or seg.skipped or seg.end:
        yield seg


def chunks(calls: list[ingest_pb2.Call], write_key: str) -> Iterator[ingest_pb2.ImportEventsRequest]:
    """Requests of at most CHUNK_CALLS calls and about CHUNK_BYTES; the write key in the first."""
    first, batch, size = True, [], 0
    for c in calls:
        n = c.ByteSize() + 8
        if batch and (len(batch) >= CHUNK_CALLS or size + n > CHUNK_BYTES):
            yield ingest_pb2.ImportEventsRequest(write_key=write_key if first else "", calls=batch)
            first, batch, size = False, [], 0
        batch.append(c)
        size += n
    if batch or first:
        yield ingest_pb2.ImportEventsRequest(write_key=write_key if first else "", calls=batch)


_RETRY_AFTER = re.compile(r"retry after (\d+)")


async def _send(stub, seg: Segment, write_key: str) -> ingest_pb2.ImportEventsResponse:
    for attempt in range(MAX_RETRIES + 1):
        try:
            return await stub.ImportEvents(chunks(seg.calls, write_key), timeout=600)
        except grpc.aio.AioRpcError as e:
            retriable = e.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)
            if not retriable or attempt == MAX_RETRIES:
                raise
            m = _RETRY_AFTER.search(e.details() or "")
            await asyncio.sleep(int(m.group(1)) if m else min(2 ** attempt * 0.25, 10))
    raise AssertionError("unreachable")


async def run_import(items: Iterator[csvmap.Item], cp: Checkpoint, summary: Summary, *, write_key: str, token: str,
                     on_progress: Callable[[int], None] = lambda offset: None) -> Summary:
    """Sends the items segment by segment, saving the checkpoint after each answer."""
    async with client.stub("ingest", ingest_pb2_grpc.IngestServiceStub, token) as stub:
        for seg in segments(items):
            if seg.calls:
                try:
                    resp = await _send(stub, seg, write_key)
                except grpc.aio.AioRpcError as e:
                    raise client.rpc_error("ingest", e) from None
                summary.accepted += resp.accepted
                summary.rejected += resp.rejected
                for r in resp.rejections:
                    if len(summary.rejections) < MAX_SHOWN:
                        row = seg.rows[r.index] if 0 <= r.index < len(seg.rows) else 0
                        summary.rejections.append(Rejection(row, r.error, r.failed_event_id))
            summary.skipped += len(seg.skipped)
            for s in seg.skipped:
                if len(summary.rejections) < MAX_SHOWN:
                    summary.rejections.append(s)
            summary.rows = seg.last_row
            cp.offset, cp.rows = seg.end, seg.last_row
            cp.accepted, cp.rejected, cp.skipped = summary.accepted, summary.rejected, summary.skipped
            cp.save()
            on_progress(seg.end)
    summary.rejections.sort(key=lambda r: r.row)
    return summary


# --- the commands --------------------------------------------------------------------


def resolve_write_key(explicit: str | None) -> str:
    """--write-key, else env CDP_WRITE_KEY, else "" (the token's subject is the source)."""
    return explicit or os.environ.get("CDP_WRITE_KEY", "")


def _progress(console: Console) -> Progress:
    """Bytes of the file acknowledged by ingest, on stderr (only when it is a terminal)."""
    return Progress(TextColumn("[bold]importing"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console, disable=not console.is_terminal, transient=True)


def import_file(path: Path, *, kind: str, source: str, write_key: str, token: str, restart: bool,
                items_for: Callable[[Any, int | None, int], Iterator[csvmap.Item]], fingerprint: str,
                err: Console) -> Summary:
    cp, resumed = Checkpoint.open(path, fingerprint, client.state_dir(), restart=restart)
    summary = Summary(file=str(path), source=source)
    if resumed:
        summary.accepted, summary.rejected, summary.skipped = cp.accepted, cp.rejected, cp.skipped
        summary.resumed_from_row = cp.rows
        err.print(f"resuming {path} after row {cp.rows} (checkpoint {cp.path})")
    with open(path, "rb") as f, _progress(err) as progress:
        task = progress.add_task(kind, total=cp.size, completed=cp.offset)
        items = items_for(f, cp.offset if resumed else None, cp.rows if resumed else 0)
        try:
            asyncio.run(run_import(items, cp, summary, write_key=write_key, token=token,
                                   on_progress=lambda off: progress.update(task, completed=off)))
        except KeyboardInterrupt:
            err.print(f"interrupted: run the same command again to resume after row {cp.rows}")
            raise SystemExit(130) from None
    cp.clear()
    return summary


def print_summary(s: Summary, *, as_json: bool, out: Console) -> None:
    if as_json:
        click.echo(json.dumps(s.to_dict(), ensure_ascii=False))
        return
    resumed = f" (resumed after row {s.resumed_from_row})" if s.resumed_from_row else ""
    out.print(f"imported {s.file}{resumed}: {s.rows} rows, [green]{s.accepted} accepted[/green], "
              f"[red]{s.rejected} rejected[/red] by ingest, {s.skipped} not sent (unreadable rows)")
    for r in s.rejections:
        where = f"failed event {r.failed_event_id}" if r.failed_event_id else "not sent"
        out.print(f"  row {r.row}: {r.error} ({where})", markup=False, highlight=False)
    if s.rejected:
        out.print("rejected calls are kept by ingest: `cdp failed list --service ingest`, "
                  "fix and `cdp failed replay ID`")


WRITE_KEY_HELP = ("Write key of the source the events belong to (default: env CDP_WRITE_KEY; "
                  "without one, the token's subject is the source).")


@click.group("import")
def import_group() -> None:
    """Bulk import of files through ingest's streaming ImportEvents (resumable, idempotent)."""


def _common(fn):
    fn = click.option("--token", "token_", help="Bearer token with events:write (default: env CDP_TOKEN, "
                      "else .cdp/token).")(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(fn)
    fn = click.option("--restart", is_flag=True, help="Ignore a checkpoint of an interrupted import.")(fn)
    fn = click.option("--write-key", help=WRITE_KEY_HELP)(fn)
    return fn


@import_group.command("events")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", default="", help="Source name, part of derived message ids (default: none).")
@_common
def import_events(file: Path, source: str, write_key: str | None, restart: bool, as_json: bool,
                  token_: str | None) -> None:
    """Import Segment calls from a JSON-lines file (one call per line, with "type")."""
    token = client.resolve_token(token_)
    wk = resolve_write_key(write_key)
    s = import_file(file, kind="events", source=source, write_key=wk, token=token, restart=restart,
                    items_for=lambda f, off, row: jsonl_items(f, source, offset=off or 0, row=row),
                    fingerprint=hashlib.sha256(f"events\0{source}\0{wk}".encode()).hexdigest(),
                    err=Console(stderr=True, soft_wrap=True))
    print_summary(s, as_json=as_json, out=Console(soft_wrap=True))


@import_group.command("csv")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", required=True, help="Source name: part of each row's message id.")
@click.option("--map", "map_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Mapping YAML (see docs/connectors.md).")
@_common
def import_csv(file: Path, source: str, map_path: Path, write_key: str | None, restart: bool, as_json: bool,
               token_: str | None) -> None:
    """Import CRM contacts (identify) or POS transactions (track) from a CSV file."""
    try:
        mapping = csvmap.load_mapping(map_path)
        with open(file, "rb") as f:
            csvmap.RowMapper(mapping, csvmap.read_header(f, mapping)[0], source)  # header check before sending
    except csvmap.MappingError as e:
        raise client.CliError(f"{map_path}: {e}") from None
    token = client.resolve_token(token_)
    wk = resolve_write_key(write_key)
    s = import_file(file, kind="csv", source=source, write_key=wk, token=token, restart=restart,
                    items_for=lambda f, off, row: csvmap.csv_items(f, mapping, source, offset=off, row=row),
                    fingerprint=hashlib.sha256(f"csv\0{source}\0{wk}\0{mapping.fingerprint}".encode()).hexdigest(),
                    err=Console(stderr=True, soft_wrap=True))
    print_summary(s, as_json=as_json, out=Console(soft_wrap=True))
