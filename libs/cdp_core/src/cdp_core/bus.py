"""The JetStream bus: idempotent stream and consumer declaration, batched publishing.

Streams: one per producing service, `CDP_<SERVICE>` with subjects `cdp.<service>.>`,
file storage, unlimited retention (the log keeps all history), a duplicate window for
Nats-Msg-Id de-duplication.

`publish_batch` publishes asynchronously (every message with its own reply subject, the
JetStream ack arriving there) and awaits every ack before it returns: once it returns,
every message is durable in its stream.

It does what nats-py's `publish_async` does for each message (HPUB with a reply inbox,
Nats-Msg-Id and the trace headers, one ack per message), but for the whole batch at once:
the headers common to the batch are encoded once, the HPUB commands are written to the
connection's pending buffer in one piece and flushed with one wake-up of the flusher, and
the acks resolve one future per batch instead of a future, a semaphore slot and a done
callback per message. When the nats-py client lacks the internals this uses, it falls back
to `publish_async` per message.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from itertools import count

import nats
import nats.errors
from nats.js import api
from nats.js.errors import APIError, BadRequestError, NoStreamResponseError, NotFoundError

from . import envelope as envelope_mod
from .logs import get_logger
from .telemetry import inject_headers

log = get_logger(__name__)

DUPLICATE_WINDOW_S = 2 * 60 * 60  # Nats-Msg-Id de-duplication window (default; CDP_DUPLICATE_WINDOW_S)
MAX_PAYLOAD = 1024 * 1024  # bytes; NATS server default max_payload
PUBLISH_ACK_TIMEOUT_S = 15.0
_HEADER_OVERHEAD = len(b"NATS/1.0\r\n\r\n")
# As nats-py validates and encodes headers and subjects (nats/aio/client.py)
_HEADER_KEY_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_SUBJECT_INVALID_RE = re.compile(r"[ \t\r\n]")
_NO_RESPONDERS = "503"


def _encode_header(key: str, value: str) -> bytes:
    """One `key: value\r\n` line exactly as nats-py writes it; b"" for an empty key."""
    key = key.strip()
    if not key:
        return b""
    if not _HEADER_KEY_RE.fullmatch(key):
        raise nats.errors.BadHeaderError(key)
    return b"%s: %s\r\n" % (key.encode(), value.strip().translate(_HEADER_VALUE_NEWLINES).encode())


class _PendingBatch:
    """The acks of one published batch; `future` resolves when the last one arrived."""

    __slots__ = ("acks", "remaining", "future")

    def __init__(self, n: int, future: asyncio.Future):
        self.acks: list = [None] * n
        self.remaining = n
        self.future = future


def stream_name(service: str) -> str:
    return "CDP_" + service.upper().replace("-", "_")


def stream_subjects(service: str) -> list[str]:
    return [f"cdp.{service}.>"]


@dataclass
class Outgoing:
    subject: str
    data: bytes
    msg_id: str
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_envelope(cls, env: envelope_mod.Envelope, headers: dict[str, str] | None = None) -> Outgoing:
        return cls(env.type, env.SerializeToString(), env.event_id, dict(headers or {}))


class Bus:
    def __init__(self, nc: nats.NATS):
        self.nc = nc
        self.js = nc.jetstream(timeout=10)
        self._reply_prefix = ""  # "<inbox>." of the ack subscription, once subscribed
        self._batches: dict[str, _PendingBatch] = {}
        self._batch_ids = count(1)
        self._fast = all(hasattr(nc, a) for a in ("_send_command", "_flush_pending", "_flush_queue",
                                                   "_max_payload", "stats", "new_inbox"))

    @classmethod
    async def connect(cls, url: str, name: str = "cdp") -> Bus:
        nc = await nats.connect(
            url,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            pending_size=64 * 1024 * 1024,
        )
        return cls(nc)

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.drain()

    async def ensure_stream(self, service: str, *, max_age_s: float = 0, replicas: int = 1,
                            duplicate_window_s: float | None = DUPLICATE_WINDOW_S) -> api.StreamInfo:
        """Declare CDP_<SERVICE>; re-declaring with the same config is a no-op.

        `duplicate_window_s` is the Nats-Msg-Id de-duplication window. None keeps the window
        of an existing stream (the default for a new one): a service declaring a stream it
        only consumes must not change the window its producer chose.
        """
        name = stream_name(service)
        if duplicate_window_s is None:
            try:
                duplicate_window_s = (await self.js.stream_info(name)).config.duplicate_window or DUPLICATE_WINDOW_S
            except NotFoundError:
                duplicate_window_s = DUPLICATE_WINDOW_S
        if duplicate_window_s <= 0:
            raise ValueError("duplicate_window_s must be positive")
        cfg = api.StreamConfig(
            name=name,
            subjects=stream_subjects(service),
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            max_age=max_age_s,
            # the server refuses a duplicate window longer than max_age
            duplicate_window=min(duplicate_window_s, max_age_s) if max_age_s else duplicate_window_s,
            num_replicas=replicas,
            allow_direct=True,
        )
        try:
            return await self.js.add_stream(cfg)
        except BadRequestError as e:
            if e.err_code == 10058:  # stream name already in use with a different configuration
                return await self.js.update_stream(cfg)
            raise

    async def ensure_consumer(self, stream: str, durable: str, filter_subjects: list[str], *, ack_wait_s: float = 30,
                              max_ack_pending: int = 10_000, max_deliver: int = -1) -> api.ConsumerInfo:
        """Declare a durable pull consumer with explicit acks; idempotent."""
        cfg = api.ConsumerConfig(
            durable_name=durable,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_ack_pending=max_ack_pending,
            max_deliver=max_deliver,
        )
        if len(filter_subjects) == 1:
            cfg.filter_subject = filter_subjects[0]
        else:
            cfg.filter_subjects = filter_subjects
        return await self.js.add_consumer(stream, cfg)

    async def publish_batch(self, messages: list[Outgoing]) -> list[api.PubAck]:
        """Publish all messages asynchronously, then await every ack (durable on return).

        Raises if any publish is not acknowledged; the caller retries the whole batch,
        and Nats-Msg-Id makes the retry drop what was already stored.
        """
        if not messages:
            return []
        if self._fast:
            return await self._publish_batch_fast(messages)
        return await self._publish_batch_each(messages)

    async def _publish_batch_each(self, messages: list[Outgoing]) -> list[api.PubAck]:
        """publish_async per message (the portable path)."""
        trace_headers = inject_headers()
        limit = min(MAX_PAYLOAD, self.nc.max_payload or MAX_PAYLOAD)
        batch = []
        for m in messages:  # check every message first: an oversize one publishes nothing
            headers = {"Nats-Msg-Id": m.msg_id, **trace_headers, **m.headers}
            # the server's limit counts the headers too, and closes the connection beyond it
            size = len(m.data) + _HEADER_OVERHEAD + sum(len(k) + len(v) + 4 for k, v in headers.items())
            if size > limit:
                raise ValueError(f"message for {m.subject} is {size} bytes with headers; the limit is {limit}")
            batch.append((m, headers))
        futures = []
        for m, headers in batch:
            futures.append(await self.js.publish_async(m.subject, m.data, headers=headers))
        return list(await asyncio.wait_for(asyncio.gather(*futures), timeout=PUBLISH_ACK_TIMEOUT_S))

    async def _publish_batch_fast(self, messages: list[Outgoing]) -> list[api.PubAck]:
        """The same messages, headers, checks and acks as `_publish_batch_each`, written at once."""
        nc = self.nc
        trace_headers = inject_headers()
        limit = min(MAX_PAYLOAD, nc.max_payload or MAX_PAYLOAD)
        # The lines common to every message of the batch (trace context), encoded once.
        trace_lines = b"".join(_encode_header(k, v) for k, v in trace_headers.items())
        trace_size = sum(len(k) + len(v) + 4 for k, v in trace_headers.items())
        msg_id_key = "Nats-Msg-Id"
        plain = msg_id_key not in trace_headers
        encoded = []
        subjects = set()
        for m in messages:  # check every message first: an oversize one publishes nothing
            if plain and not m.headers:
                msg_id = m.msg_id
                size = len(m.data) + _HEADER_OVERHEAD + len(msg_id_key) + len(msg_id) + 4 + trace_size
                hdr = b"NATS/1.0\r\nNats-Msg-Id: %s\r\n%s\r\n" % (
                    msg_id.strip().translate(_HEADER_VALUE_NEWLINES).encode(), trace_lines)
            else:
                headers = {msg_id_key: m.msg_id, **trace_headers, **m.headers}
                size = len(m.data) + _HEADER_OVERHEAD + sum(len(k) + len(v) + 4 for k, v in headers.items())
                hdr = b"NATS/1.0\r\n" + b"".join(_encode_header(k, v) for k, v in headers.items()) + b"\r\n"
            # the server's limit counts the headers too, and closes the connection beyond it
            if size > limit:
                raise ValueError(f"message for {m.subject} is {size} bytes with headers; the limit is {limit}")
            if len(m.data) > nc._max_payload:
                raise nats.errors.MaxPayloadError
            subjects.add(m.subject)
            encoded.append(hdr)
        for subject in subjects:  # as nc.publish validates (unless the client skips it)
            if not subject:
                raise nats.errors.BadSubjectError
            if not getattr(nc, "_skip_subject_validation", False) and _SUBJECT_INVALID_RE.search(subject):
                raise nats.errors.BadSubjectError
        if nc.is_closed:
            raise nats.errors.ConnectionClosedError
        if nc.is_draining_pubs:
            raise nats.errors.ConnectionDrainingError
        if not self._reply_prefix:
            prefix = nc.new_inbox() + "."
            await nc.subscribe(prefix + ">", cb=self._on_ack)
            self._reply_prefix = prefix
        batch_id = str(next(self._batch_ids))
        reply = f"{self._reply_prefix}{batch_id}."
        parts = []
        total = 0
        for i, (m, hdr) in enumerate(zip(messages, encoded, strict=True)):
            data = m.data
            hl = len(hdr)
            cmd = b"HPUB %s %s%d %d %d\r\n%s%s\r\n" % (m.subject.encode(), reply.encode(), i, hl, hl + len(data),
                                                        hdr, data)
            parts.append(cmd)
            total += len(data)
        payload = b"".join(parts)
        if not nc.is_connected:
            max_pending = getattr(nc, "_max_pending_size", 0)
            if max_pending <= 0 or len(payload) + getattr(nc, "_pending_data_size", 0) > max_pending:
                raise nats.errors.OutboundBufferLimitError
        pending = _PendingBatch(len(messages), asyncio.get_running_loop().create_future())
        self._batches[batch_id] = pending
        try:
            nc.stats["out_msgs"] += len(messages)
            nc.stats["out_bytes"] += total
            await nc._send_command(payload)
            if nc._flush_queue is not None and nc._flush_queue.empty():
                await nc._flush_pending()
            return await asyncio.wait_for(pending.future, timeout=PUBLISH_ACK_TIMEOUT_S)
        finally:
            self._batches.pop(batch_id, None)

    async def _on_ack(self, msg) -> None:
        """One JetStream ack (or error) of a message published by `_publish_batch_fast`."""
        batch_id, _, index = msg.subject[len(self._reply_prefix):].partition(".")
        pending = self._batches.get(batch_id)
        if pending is None or pending.future.done():
            return
        try:
            i = int(index)
            if pending.acks[i] is not None:
                return
            if msg.headers and msg.headers.get(api.Header.STATUS) == _NO_RESPONDERS:
                pending.future.set_exception(NoStreamResponseError())
                return
            resp = json.loads(msg.data)
            if "error" in resp:
                try:
                    err = APIError.from_error(resp["error"])
                except APIError as raised:  # from_error raises some codes' errors itself
                    err = raised
                pending.future.set_exception(err)
                return
            pending.acks[i] = api.PubAck.from_response(resp)
        except (ValueError, IndexError) as e:  # not an ack of ours: fail the batch, the caller retries
            pending.future.set_exception(nats.errors.Error(f"unexpected publish ack: {e}"))
            return
        pending.remaining -= 1
        if not pending.remaining:
            pending.future.set_result(pending.acks)

    async def publish_envelopes(self, envs: list[envelope_mod.Envelope]) -> list[api.PubAck]:
        return await self.publish_batch([Outgoing.from_envelope(e) for e in envs])
