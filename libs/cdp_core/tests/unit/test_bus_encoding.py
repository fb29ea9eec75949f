"""Bus.publish_batch writes its HPUB commands itself: they must be, byte for byte, what
nats-py's own publish writes for the same message, reply subject and headers; and the
acks, read back through the ack sink, resolve the batch."""

from __future__ import annotations

import asyncio
import random
import re

import nats
import pytest

from cdp_core import bus as bus_mod
from cdp_core.bus import Bus, Outgoing

TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "k=v"}
_HPUB = re.compile(rb"HPUB (\S+) (\S+) (\d+) (\d+)\r\n")


class _Ack:
    def __init__(self, subject: str, data: bytes):
        self.subject, self.data, self.headers = subject, data, None


async def _written(sent: list, task: asyncio.Task) -> None:
    """Until the batch's bytes were sent (or the publish failed)."""
    for _ in range(1000):
        if sent or task.done():
            break
        await asyncio.sleep(0)
    if task.done():
        task.result()  # raises what the publish raised
    assert sent


def _messages(rng: random.Random) -> list[Outgoing]:
    return [
        Outgoing(rng.choice(["cdp.ingest.event.track", "a.b"]),
                 rng.randbytes(rng.choice([0, 5, 300, 70000])),
                 rng.choice([f"evt-{i}", " padded ", "new\nline", "tab\tin", "\u3000wide\u3000", "é-ß"]),
                 rng.choice([{}, {}, {"x-source": "crm"}, {"Nats-Msg-Id": "own"}]))
        for i in range(rng.randrange(1, 12))
    ]


@pytest.mark.parametrize("trace", [{}, TRACE])
def test_hpub_commands_are_what_nats_py_writes(monkeypatch, trace):
    monkeypatch.setattr(bus_mod, "inject_headers", lambda: dict(trace))

    async def main():
        rng = random.Random(len(trace))
        nc = nats.NATS()
        sent: list[bytes] = []

        async def send(cmd, priority=False):
            sent.append(bytes(cmd))

        async def subscribe(subject, **kw):
            return None

        async def flush_pending(*a, **kw):
            return None

        nc._send_command, nc.subscribe, nc._flush_pending = send, subscribe, flush_pending
        nc._status = nats.aio.client.Client.CONNECTED
        bus = Bus(nc)
        assert bus._fast
        for _ in range(30):
            msgs = _messages(rng)
            sent.clear()
            task = asyncio.create_task(bus.publish_batch(msgs))
            await _written(sent, task)
            (written,) = sent
            replies = [m.group(2).decode() for m in _HPUB.finditer(written)]
            assert len(replies) == len(msgs)
            # the same messages through nats-py's publish, with the same reply subjects
            sent.clear()
            for m, reply in zip(msgs, replies, strict=True):
                await nc.publish(m.subject, m.data, reply=reply, headers={"Nats-Msg-Id": m.msg_id, **trace, **m.headers})
            assert written == b"".join(sent)
            for i, reply in enumerate(replies):  # the acks arrive (duplicates of one are ignored)
                bus._ack(_Ack(reply, b'{"stream":"S","seq":%d}' % (i + 1)))
                bus._ack(_Ack(reply, b'{"stream":"S","seq":%d}' % (i + 1)))
            acks = await asyncio.wait_for(task, 5)
            assert len(acks) == len(msgs)
            assert [a.seq for a in acks] == list(range(1, len(msgs) + 1))
            assert acks[0] == nats.js.api.PubAck(stream="S", seq=1) and acks == list(acks)

    asyncio.run(main())


def test_an_error_ack_fails_the_batch(monkeypatch):
    monkeypatch.setattr(bus_mod, "inject_headers", dict)

    async def main():
        nc = nats.NATS()
        sent: list[bytes] = []

        async def send(cmd, priority=False):
            sent.append(bytes(cmd))

        async def nothing(*a, **kw):
            return None

        nc._send_command, nc.subscribe, nc._flush_pending = send, nothing, nothing
        nc._status = nats.aio.client.Client.CONNECTED
        bus = Bus(nc)
        task = asyncio.create_task(bus.publish_batch([Outgoing("a.b", b"x", "1"), Outgoing("a.b", b"y", "2")]))
        await _written(sent, task)
        replies = [m.group(2).decode() for m in _HPUB.finditer(sent[0])]
        bus._ack(_Ack(replies[0], b'{"stream":"S","seq":1}'))
        bus._ack(_Ack(replies[1], b'{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}'))
        with pytest.raises(nats.js.errors.APIError, match="maximum messages"):
            await asyncio.wait_for(task, 5)
        bus._ack(_Ack(replies[1], b"not json"))  # late or foreign acks are ignored, never raised

    asyncio.run(main())


@pytest.mark.parametrize("resp", [
    {"stream": "S", "seq": 1}, {"stream": "S", "seq": 2, "duplicate": True}, {"stream": "S", "seq": 3, "domain": "d"},
    {"stream": "S", "seq": 4, "batch": "b", "count": 3}, {"stream": "S", "seq": 5, "unknown": 1},
])
def test_pub_acks_are_what_nats_py_builds(resp):
    assert bus_mod._pub_ack(dict(resp)) == nats.js.api.PubAck.from_response(dict(resp))
