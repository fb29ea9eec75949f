"""The JetStream bus: idempotent stream and consumer declaration, batched publishing.

Streams: one per producing service, `CDP_<SERVICE>` with subjects `cdp.<service>.>`,
file storage, unlimited retention (the log keeps all history), a duplicate window for
Nats-Msg-Id de-duplication.

`publish_batch` publishes asynchronously (every message with its own reply subject, the
JetStream ack arriving there) and awaits every ack before it returns: once it returns,
every message is durable in its stream.

It does what nats-py's `publish_async` does for each message (HPUB with a reply inbox,
Nats-Msg-Id and the trace headers, one ack per message), but for the whole batch at once:
the headers common to the batch are encoded once, every message is checked and its HPUB
command built before anything is written, the commands go to the connection's pending buffer
in one piece and are flushed with one wake-up of the flusher, and the acks are settled as
nats-py reads them (a single-response subscription whose "future" is `_AckSink`), resolving
one future per batch instead of a future, a semaphore slot, a done callback and a queued
callback per message; PubAck objects are built only when read. When the nats-py client lacks
the internals this uses, it falls back to `publish_async` per message.

`fetch` and `settle` are the consumer's side: a pull of up to N messages that takes the
delivered messages off the subscription's queue as they are (nats-py's fetch waits for each
message through a new task with its own timeout), and the acks and terms of a batch written as
one command (nats-py's `Msg.ack()` writes and flushes one at a time). Both send exactly what
nats-py sends; without the internals they need, they call nats-py's own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count

import nats
import nats.errors
from nats.js import api
from nats.js.errors import APIError, BadRequestError, NoStreamResponseError, NotFoundError

from . import envelope as envelope_mod
from .errors import InvalidArgument, Unavailable

try:  # faster for the acks, one per published message
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is optional
    _loads = json.loads
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
# Pull-request answers (nats-py's JetStreamContext handles them alike): the end of a request,
# a heartbeat, and the temporary errors that end a request without failing the fetch.
_PULL_DONE = {api.StatusCode.NO_MESSAGES, api.StatusCode.REQUEST_TIMEOUT, api.StatusCode.CONFLICT}
_PULL_HEARTBEAT = api.StatusCode.CONTROL_MESSAGE
# Once a waiting pull has delivered its first message, the fetch returns when no further
# message arrives for this long (nats-py's fetch waits out the whole timeout instead, which
# at a trickle holds each message for up to the timeout).
PULL_LINGER_S = 0.002
# ... and at the latest this long after its first message, however steadily they keep coming: a
# steady stream a little faster than one message per PULL_LINGER_S would otherwise hold the
# first message until the batch is full (256 messages at 1,000/s: a quarter of a second).
PULL_GATHER_S = 0.01
PULL_EXPIRY_MARGIN_S = 0.05
_ACK = b"+ACK"
_TERM = b"+TERM"


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


_PUB_ACK_FIELDS = frozenset(f.name for f in dataclasses.fields(api.PubAck))


def _pub_ack(resp: dict) -> api.PubAck:
    """api.PubAck.from_response(resp), without its per-field loop when every key is a field."""
    if resp.keys() <= _PUB_ACK_FIELDS:
        return api.PubAck(**resp)
    return api.PubAck.from_response(resp)


class PubAcks(Sequence):
    """The acks of a published batch, in order: each an api.PubAck, built when it is first
    read (most callers only need the batch to be durable, and never read them)."""

    __slots__ = ("_raw", "_built")

    def __init__(self, raw: list[dict]):
        self._raw = raw
        self._built: list[api.PubAck] | None = None

    def _acks(self) -> list[api.PubAck]:
        if self._built is None:
            self._built = [_pub_ack(r) for r in self._raw]
        return self._built

    def __len__(self) -> int:
        return len(self._raw)

    def __getitem__(self, i):
        return self._acks()[i]

    def __iter__(self):
        return iter(self._acks())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (PubAcks, list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return repr(self._acks())


class _AckSink:
    """Stands in for the future of a nats-py single-response subscription (`subscribe(...,
    future=...)`, what old-style requests use): nats-py hands every message of such a
    subscription to `set_result` as it reads it, so the acks of `publish_batch` are settled
    right there, without the queue, the task and the coroutine call per message of a
    callback subscription. It never completes, so the subscription keeps delivering."""

    __slots__ = ("_handle",)

    def __init__(self, handle):
        self._handle = handle

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False

    def cancel(self, msg=None) -> bool:
        return False

    def set_result(self, msg) -> None:
        self._handle(msg)


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
        self._reply_prefix = ""  # "<inbox>." of the ack subscription
        self._subscribed = False
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

    async def publish_batch(self, messages: list[Outgoing]) -> Sequence[api.PubAck]:
        """Publish all messages asynchronously, then await every ack (durable on return).

        Raises if any publish is not acknowledged; the caller retries the whole batch,
        and Nats-Msg-Id makes the retry drop what was already stored. The acks come back in
        order (a `PubAcks` on the fast path: each PubAck built when first read).
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

    async def _publish_batch_fast(self, messages: list[Outgoing]) -> PubAcks:
        """The same messages, headers, checks and acks as `_publish_batch_each`, written at once.
        Every message is checked while its HPUB is built; nothing is written before all passed."""
        nc = self.nc
        trace_headers = inject_headers()
        limit = min(MAX_PAYLOAD, nc.max_payload or MAX_PAYLOAD)
        max_payload = nc._max_payload
        # The lines common to every message of the batch (trace context), encoded once.
        trace_lines = b"".join(_encode_header(k, v) for k, v in trace_headers.items())
        trace_size = sum(len(k) + len(v) + 4 for k, v in trace_headers.items())
        msg_id_key = "Nats-Msg-Id"
        plain = msg_id_key not in trace_headers
        # the size the server counts, less the payload and the id: "Nats-Msg-Id" + ": " + "\r\n"
        plain_size = _HEADER_OVERHEAD + len(msg_id_key) + 4 + trace_size
        # the header block's length, less the id's bytes: NATS/1.0\r\nNats-Msg-Id: <id>\r\n<trace>\r\n
        plain_hl = len(b"NATS/1.0\r\nNats-Msg-Id: \r\n\r\n") + len(trace_lines)
        trace_block = b"\r\n" + trace_lines + b"\r\n"  # ends the id's line, then the trace lines and the block
        if not self._reply_prefix:
            self._reply_prefix = nc.new_inbox() + "."  # subscribed below, before anything is sent
        batch_id = str(next(self._batch_ids))
        reply = f"{self._reply_prefix}{batch_id}.".encode()
        skip_validation = getattr(nc, "_skip_subject_validation", False)
        subject_bytes: dict[str, bytes] = {}
        parts = []
        append = parts.append
        total = 0
        for i, m in enumerate(messages):  # check every message first: an oversize one publishes nothing
            data = m.data
            n = len(data)
            subject = subject_bytes.get(m.subject)
            if subject is None:  # as nc.publish validates (unless the client skips it)
                if not m.subject or (not skip_validation and _SUBJECT_INVALID_RE.search(m.subject)):
                    raise nats.errors.BadSubjectError
                subject = subject_bytes[m.subject] = m.subject.encode()
            if plain and not m.headers:
                msg_id = m.msg_id
                size = n + plain_size + len(msg_id)
                # the server's limit counts the headers too, and closes the connection beyond it
                if size > limit:
                    raise ValueError(f"message for {m.subject} is {size} bytes with headers; the limit is {limit}")
                if n > max_payload:
                    raise nats.errors.MaxPayloadError
                # as _encode_header writes the value (a printable, unpadded id is itself)
                value = (msg_id if msg_id.isprintable() and msg_id.strip() == msg_id else
                         msg_id.strip().translate(_HEADER_VALUE_NEWLINES)).encode()
                hl = plain_hl + len(value)
                # HPUB <subject> <reply><i> <hl> <hl+n>\r\nNATS/1.0\r\nNats-Msg-Id: <id>\r\n<trace>\r\n<data>\r\n,
                # joined from parts (formatting the payload in with % costs three times as much)
                append(b"".join((b"HPUB ", subject, b" ", reply, b"%d %d %d\r\nNATS/1.0\r\nNats-Msg-Id: " % (
                    i, hl, hl + n), value, trace_block, data, b"\r\n")))
            else:
                headers = {msg_id_key: m.msg_id, **trace_headers, **m.headers}
                size = n + _HEADER_OVERHEAD + sum(len(k) + len(v) + 4 for k, v in headers.items())
                if size > limit:
                    raise ValueError(f"message for {m.subject} is {size} bytes with headers; the limit is {limit}")
                if n > max_payload:
                    raise nats.errors.MaxPayloadError
                hdr = b"NATS/1.0\r\n" + b"".join(_encode_header(k, v) for k, v in headers.items()) + b"\r\n"
                hl = len(hdr)
                append(b"HPUB %s %s%d %d %d\r\n%s%s\r\n" % (subject, reply, i, hl, hl + n, hdr, data))
            total += n
        if nc.is_closed:
            raise nats.errors.ConnectionClosedError
        if nc.is_draining_pubs:
            raise nats.errors.ConnectionDrainingError
        if not self._subscribed:
            try:  # each ack handled as it is read (see _AckSink)
                await nc.subscribe(self._reply_prefix + ">", future=_AckSink(self._ack))
            except TypeError:  # a client without single-response subscriptions: a callback one
                await nc.subscribe(self._reply_prefix + ">", cb=self._on_ack)
            self._subscribed = True
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
            got = await asyncio.wait_for(pending.future, timeout=PUBLISH_ACK_TIMEOUT_S)
        finally:
            self._batches.pop(batch_id, None)
        return PubAcks(got)

    async def _on_ack(self, msg) -> None:
        """The callback form of `_ack` (a subscription without the sink)."""
        self._ack(msg)

    def _ack(self, msg) -> None:
        """One JetStream ack (or error) of a message published by `_publish_batch_fast`.
        Never raises: it runs inside nats-py's read loop."""
        try:
            self._settle(msg)
        except Exception as e:  # noqa: BLE001 - a bug here must not break the connection's reader
            log.error("publish ack not handled", error=repr(e)[:300])

    def _settle(self, msg) -> None:
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
            resp = _loads(msg.data)
            if type(resp) is not dict:
                raise ValueError("not a JSON object")
            if "error" in resp:
                try:
                    err = APIError.from_error(resp["error"])
                except APIError as raised:  # from_error raises some codes' errors itself
                    err = raised
                pending.future.set_exception(err)
                return
            if "stream" not in resp or "seq" not in resp:  # what PubAck.from_response requires
                raise ValueError(f"no stream or seq in {sorted(resp)}")
            pending.acks[i] = resp  # a PubAck when the caller reads it (PubAcks)
        except (ValueError, IndexError, TypeError) as e:  # not an ack of ours: fail the batch, the caller retries
            pending.future.set_exception(nats.errors.Error(f"unexpected publish ack: {e}"))
            return
        pending.remaining -= 1
        if not pending.remaining:
            pending.future.set_result(pending.acks)

    async def fetch(self, psub, batch: int, timeout: float) -> list:
        """Up to `batch` messages of a pull subscription (`js.pull_subscribe_bind`); [] when none
        came within `timeout`. Like nats-py's fetch: messages already delivered come first, then a
        no-wait request for the rest, and only when that finds none a waiting request that expires
        with the timeout; a waiting request's late messages are taken by the next call."""
        sub = getattr(psub, "_sub", None)
        if not self._fast or not all(hasattr(psub, a) for a in ("_nms", "_deliver")) or \
                not hasattr(sub, "_pending_queue"):
            try:
                return await psub.fetch(batch, timeout=timeout)
            except (TimeoutError, nats.errors.TimeoutError):
                return []
        if self.nc.is_closed:
            raise nats.errors.ConnectionClosedError
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        queue = sub._pending_queue
        msgs: list = []
        while not queue.empty() and len(msgs) < batch:  # late messages of an earlier waiting request
            msg = _take(sub, queue.get_nowait())
            if msg is not None and _status(msg) is None:
                msgs.append(msg)
        if len(msgs) >= batch:
            return msgs
        await self._pull(psub, {"batch": batch - len(msgs), "no_wait": True})
        ended = await _collect(sub, queue, msgs, batch, deadline, None)
        if msgs or not ended:  # something came, or the no-wait answer did not end in time
            return msgs
        # The request expires a little before the deadline, so its end (408) is normally read
        # here rather than left on the queue for the next call.
        remaining = deadline - loop.time()
        expires_ns = int((remaining - min(PULL_EXPIRY_MARGIN_S, remaining / 10)) * 1e9)
        if expires_ns <= 0:
            return msgs
        await self._pull(psub, {"batch": batch, "expires": expires_ns})
        await _collect(sub, queue, msgs, batch, deadline, PULL_LINGER_S)
        return msgs

    async def _pull(self, psub, request: dict) -> None:
        await self.nc.publish(psub._nms, json.dumps(request).encode(), psub._deliver)

    async def settle(self, acks: Sequence, terms: Sequence = ()) -> None:
        """Acknowledges `acks` and terminates `terms` (JetStream messages), written as one command:
        the same PUBs `Msg.ack()` and `Msg.term()` send, flushed once."""
        nc = self.nc
        if not self._fast:
            for m in acks:
                await m.ack()
            for m in terms:
                await m.term()
            return
        parts = []
        for msgs, body in ((acks, _ACK), (terms, _TERM)):
            for m in msgs:
                m._check_reply()  # a message without a reply subject or already acknowledged
                parts.append(b"PUB %s %d\r\n%s\r\n" % (m.reply.encode(), len(body), body))
        if not parts:
            return
        if nc.is_closed:
            raise nats.errors.ConnectionClosedError
        nc.stats["out_msgs"] += len(parts)
        nc.stats["out_bytes"] += len(_ACK) * len(acks) + len(_TERM) * len(terms)
        await nc._send_command(b"".join(parts))
        if nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()
        for msgs in (acks, terms):
            for m in msgs:
                m._ackd = True

    async def follow(self, stream: str, subject: str, *, from_sequence: int | None, closing: asyncio.Event,
                     who: str):
        """The envelopes of `subject` stored in `stream`, as (stream sequence, envelope), through
        an ephemeral ordered consumer (push, flow control, heartbeats; nats-py recreates it from
        the last sequence on a gap): from `from_sequence`, or from new messages when None. For a
        server-streaming RPC: when `closing` is set it raises Unavailable naming the sequence to
        resume from; an undecodable message is logged and skipped. The consumer is deleted at
        the end (the server would drop it after 30 s of inactivity anyway)."""
        config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.NEW)
        if from_sequence is not None:
            if from_sequence < 1:
                raise InvalidArgument("must be at least 1 (the stream's first sequence)", field="from_sequence")
            config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                                        opt_start_seq=from_sequence)
        if closing.is_set():
            raise Unavailable(f"the {who} service is shutting down; call again")
        sub = await self.js.subscribe(subject, stream=stream, ordered_consumer=True, config=config,
                                      inactive_threshold=30)
        stop = asyncio.ensure_future(closing.wait())
        nxt: asyncio.Future | None = None
        last = from_sequence - 1 if from_sequence is not None else 0
        try:
            while True:
                nxt = asyncio.ensure_future(sub.next_msg(timeout=None))
                await asyncio.wait({nxt, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done():
                    hint = f" from_sequence {last + 1}" if last else " from_sequence as the last one received + 1"
                    raise Unavailable(f"the {who} service is shutting down; resume with{hint}")
                msg, nxt = nxt.result(), None
                seq = msg.metadata.sequence.stream
                if seq <= last:  # redelivered after the ordered consumer was recreated
                    continue
                last = seq
                try:
                    env = envelope_mod.decode(msg.data)
                except Exception as e:  # noqa: BLE001 - a foreign message on the subject is skipped, not fatal
                    log.warning("undecodable message skipped", stream=stream, sequence=seq, error=str(e)[:200])
                    continue
                yield seq, env
        finally:
            stop.cancel()
            if nxt is not None:
                nxt.cancel()
            try:
                await sub.unsubscribe()
                await self.js.delete_consumer(stream, sub._consumer)
            except Exception as e:  # noqa: BLE001 - the connection may be closing already
                log.debug("follow: unsubscribe failed", error=repr(e)[:200])

    async def publish_envelopes(self, envs: list[envelope_mod.Envelope]) -> list[api.PubAck]:
        return await self.publish_batch([Outgoing.from_envelope(e) for e in envs])


def _take(sub, msg):
    """A message taken off a subscription's queue, accounted as nats-py's next_msg does."""
    sub._pending_size -= len(msg.data)
    sub._pending_queue.task_done()
    return msg


def _status(msg) -> str | None:
    headers = msg.headers
    return headers.get(api.Header.STATUS) if headers else None


async def _collect(sub, queue: asyncio.Queue, msgs: list, batch: int, deadline: float,
                   linger: float | None) -> bool:
    """Adds the answers of one pull request to `msgs` until the batch is full, the request ends
    (True), or no message comes in time: by `deadline`, or within `linger` once one has (and
    PULL_GATHER_S after the first at the latest)."""
    loop = asyncio.get_running_loop()
    gathered = None  # with linger: when the last message may come (PULL_GATHER_S after the first)
    while len(msgs) < batch:
        if queue.empty():
            now = loop.time()
            wait = deadline - now
            if linger is not None and msgs:
                if gathered is None:
                    gathered = now + PULL_GATHER_S
                wait = min(wait, linger, gathered - now)
            if wait <= 0:
                return False
            try:
                msg = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                return False
        else:
            msg = queue.get_nowait()
        _take(sub, msg)
        status = _status(msg)
        if status is None:
            msgs.append(msg)
        elif status in _PULL_DONE:
            return True
        elif status != _PULL_HEARTBEAT:
            raise APIError.from_msg(msg)
    return False
