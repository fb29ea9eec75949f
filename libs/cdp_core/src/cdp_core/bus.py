"""The JetStream bus: idempotent stream and consumer declaration, batched publishing.

Streams: one per producing service, `CDP_<SERVICE>` with subjects `cdp.<service>.>`,
file storage, unlimited retention (the log keeps all history), a duplicate window for
Nats-Msg-Id de-duplication.

`publish_batch` publishes asynchronously with publish_async and awaits every ack before
it returns: once it returns, every message is durable in its stream.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import nats
from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError

from . import envelope as envelope_mod
from .logs import get_logger
from .telemetry import inject_headers

log = get_logger(__name__)

DUPLICATE_WINDOW_S = 2 * 60 * 60  # Nats-Msg-Id de-duplication window (default; CDP_DUPLICATE_WINDOW_S)
MAX_PAYLOAD = 1024 * 1024  # bytes; NATS server default max_payload
PUBLISH_ACK_TIMEOUT_S = 15.0
_HEADER_OVERHEAD = len(b"NATS/1.0\r\n\r\n")


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

    async def publish_envelopes(self, envs: list[envelope_mod.Envelope]) -> list[api.PubAck]:
        return await self.publish_batch([Outgoing.from_envelope(e) for e in envs])
