"""cdp.identity.resolved embeds the ingest event's own bytes: it must read back as the same
message a fully built IdentityResolved would be."""

from cdp.identity.v1 import events_pb2 as identity_events
from cdp.ingest.v1 import events_pb2 as ingest_events
from cdp_core import envelope
from cdp_identity.graph import Outcome
from cdp_identity.graphstore import ident, resolved_event
from cdp_identity.rules import Dropped, Provenance


def test_the_resolved_event_reads_back_whole():
    ev = ingest_events.EventCollected(kind="track", event="Order Completed", user_id="u1", anonymous_id="a" * 300,
                                      properties_json='{"total": 12.5, "note": "' + "x" * 500 + '"}')
    cause = envelope.make("cdp.ingest.event.track", ev, producer="ingest", event_id="e-1")
    out = Outcome("p-1", (("user_id", "u1"), ("anonymous_id", "a" * 300)), (("user_id", "u1"),), (),
                  (Dropped(("email", "null"), Provenance("blocked", ("email", "null"), 1.0, "placeholder")),),
                  True, False, False)
    env = resolved_event(envelope.decode(cause.SerializeToString()), out, "p-1", rebuilt_by="s-1")
    got = envelope.unpack(envelope.decode(env.SerializeToString()), identity_events.IdentityResolved)
    want = identity_events.IdentityResolved(
        event=ev, profile_id="p-1", event_id="e-1", identifiers=[ident(k) for k in out.accepted],
        new_identifiers=[ident(("user_id", "u1"))], rebuilt_by="s-1",
        dropped=[identity_events.DroppedIdentifier(identifier=ident(("email", "null")), rule="blocked",
                                                   reason="placeholder")])
    assert got == want
    assert env.causation_id == "e-1" and env.type == "cdp.identity.resolved"
    assert env.payload.value == want.SerializeToString()  # byte for byte, field 1 first
