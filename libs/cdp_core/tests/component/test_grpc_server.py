"""The shared grpc.aio server: health, reflection, auth, error mapping, trace propagation."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry import trace

from cdp.common.v1.identifier_pb2 import Identifier
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_core import telemetry
from cdp_core.auth import issue_token
from cdp_core.errors import InvalidArgument, NotFound
from cdp_core.grpc_server import GrpcServer, channel, current_principal

pytestmark = pytest.mark.component

SERVICE = "cdp.identity.v1.IdentityService"
METHOD = f"/{SERVICE}/ResolveIdentifier"


class FakeIdentity(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self):
        self.seen_trace_ids: list[int] = []
        self.seen_parent_span_ids: list[int] = []
        self.principals = []

    async def ResolveIdentifier(self, request, context):
        span = trace.get_current_span()
        self.seen_trace_ids.append(span.get_span_context().trace_id)
        self.seen_parent_span_ids.append(span.parent.span_id if getattr(span, "parent", None) else 0)
        self.principals.append(current_principal.get())
        kind = request.identifier.type
        if kind == "invalid":
            raise InvalidArgument("must not be empty", field="identifier.value")
        if kind == "missing":
            raise NotFound("no profile has this identifier")
        if kind == "crash":
            raise RuntimeError("db password=hunter2 leaked")
        return identity_pb2.ResolveIdentifierResponse(profile_id="p-1", identifiers=[request.identifier])


@pytest.fixture
async def server(auth_secret):
    telemetry.configure("tests")
    servicer = FakeIdentity()
    gs = GrpcServer(secret=auth_secret, scopes={METHOD: "profiles:read"}, service_names=[SERVICE])
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, gs.server)
    port = gs.bind("127.0.0.1", 0)
    assert port > 0 and gs.port == port
    await gs.start()
    await gs.set_serving(True)
    gs.fake = servicer
    try:
        yield gs
    finally:
        await gs.stop(0)


def _addr(gs) -> str:
    return f"127.0.0.1:{gs.port}"


def _req(kind: str = "email", value: str = "a@b.c"):
    return identity_pb2.ResolveIdentifierRequest(identifier=Identifier(type=kind, value=value))


async def _call(gs, token: str | None, kind: str = "email"):
    async with channel(_addr(gs), token) as ch:
        return await identity_pb2_grpc.IdentityServiceStub(ch).ResolveIdentifier(_req(kind), timeout=10)


async def _status(gs, token: str | None, kind: str = "email") -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _call(gs, token, kind)
    return err.value


async def test_health_serving_and_not_serving_without_a_token(server):
    async with channel(_addr(server)) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for name in ("", SERVICE):
            r = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert r.status == health_pb2.HealthCheckResponse.SERVING
        await server.set_serving(False)
        for name in ("", SERVICE):
            r = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert r.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Check(health_pb2.HealthCheckRequest(service="cdp.nope.v1.Nope"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_services(server):
    async with channel(_addr(server)) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = set()
        async for r in responses:
            names |= {s.name for s in r.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


async def test_a_valid_token_with_the_scope_is_served(server, auth_secret):
    r = await _call(server, issue_token(auth_secret, "reader", ["profiles:read"]))
    assert r.profile_id == "p-1"
    (principal,) = server.fake.principals
    assert principal.subject == "reader" and "profiles:read" in principal.scopes
    assert current_principal.get() is None  # reset after the call


async def test_missing_or_invalid_token_is_unauthenticated(server, auth_secret):
    assert (await _status(server, None)).code() == grpc.StatusCode.UNAUTHENTICATED
    wrong = issue_token(auth_secret + "-other", "x", ["admin"])
    assert (await _status(server, wrong)).code() == grpc.StatusCode.UNAUTHENTICATED
    expired = issue_token(auth_secret, "x", ["admin"], ttl_s=-5)
    e = await _status(server, expired)
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED and "expired" in e.details()
    assert server.fake.principals == []  # the servicer never ran


async def test_wrong_scope_is_permission_denied(server, auth_secret):
    e = await _status(server, issue_token(auth_secret, "writer", ["events:write", "profiles:write"]))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "profiles:read" in e.details()
    assert server.fake.principals == []
    # admin has every scope
    assert (await _call(server, issue_token(auth_secret, "ops", ["admin"]))).profile_id == "p-1"


async def test_unlisted_methods_need_admin(auth_secret):
    gs = GrpcServer(secret=auth_secret, scopes={}, service_names=[SERVICE])
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(FakeIdentity(), gs.server)
    gs.bind("127.0.0.1", 0)
    await gs.start()
    try:
        e = await _status(gs, issue_token(auth_secret, "reader", ["profiles:read"]))
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (await _call(gs, issue_token(auth_secret, "ops", ["admin"]))).profile_id == "p-1"
    finally:
        await gs.stop(0)


async def test_domain_errors_map_to_status_codes_naming_the_field(server, auth_secret):
    token = issue_token(auth_secret, "reader", ["profiles:read"])
    e = await _status(server, token, "invalid")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "identifier.value" in e.details() and "must not be empty" in e.details()
    assert (await _status(server, token, "missing")).code() == grpc.StatusCode.NOT_FOUND


async def test_unexpected_exception_is_internal_with_a_trace_id_and_no_detail(server, auth_secret):
    token = issue_token(auth_secret, "reader", ["profiles:read"])
    with telemetry.tracer().start_as_current_span("client call") as span:
        e = await _status(server, token, "crash")
    assert e.code() == grpc.StatusCode.INTERNAL
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert e.details() == f"internal error (trace id {trace_id})"
    assert "hunter2" not in e.details() and "RuntimeError" not in e.details()


async def test_trace_context_propagates_from_client_to_server(server, auth_secret):
    token = issue_token(auth_secret, "reader", ["profiles:read"])
    with telemetry.tracer().start_as_current_span("client call") as span:
        await _call(server, token)
    (server_trace_id,) = server.fake.seen_trace_ids
    assert server_trace_id == span.get_span_context().trace_id != 0
    assert server.fake.seen_parent_span_ids == [span.get_span_context().span_id]
    # without a client span the server starts a trace of its own
    await _call(server, token)
    assert server.fake.seen_trace_ids[1] not in (0, server_trace_id)


async def test_bind_failure_is_an_error(server, auth_secret):
    other = GrpcServer(secret=auth_secret, scopes={}, service_names=[SERVICE])
    with pytest.raises((OSError, RuntimeError)):
        other.bind("127.0.0.1", server.port)  # taken (reuseport is off)
