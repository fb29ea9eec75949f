"""The grpc.aio server bootstrap shared by every service.

One interceptor, applied to every RPC in this order: trace (W3C context from metadata),
authenticate (bearer JWT), authorize (the scope the service maps the method to),
call, map errors to status codes, and write one canonical log line.

Health (grpc.health.v1) and reflection are always on and need no token.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from .auth import ADMIN, Principal, principal_from_metadata
from .errors import CdpError
from .logs import get_logger
from .telemetry import extract_context, inject_headers, tracer

log = get_logger(__name__)
current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("cdp_principal", default=None)
PUBLIC_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class ServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, secret: str, scopes: dict[str, str]):
        self.secret = secret
        self.scopes = scopes  # full method name -> scope; unlisted methods need admin

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None or details.method.startswith(PUBLIC_PREFIXES):
            return handler
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, details.method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, details.method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:  # client streaming: same wrapper, the request is an iterator
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, details.method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(handler.stream_stream, details.method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return None  # an RPC shape we cannot guard is not served

    def _authorize(self, method: str, context: grpc.aio.ServicerContext) -> Principal:
        principal = principal_from_metadata(self.secret, context.invocation_metadata())
        principal.require(self.scopes.get(method, ADMIN))
        return principal

    def _span(self, method: str, context: grpc.aio.ServicerContext):
        carrier = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        return tracer().start_as_current_span(
            method.lstrip("/"),
            context=extract_context(carrier),
            kind=trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.method": method},
        )

    def _wrap_unary(self, fn: Callable, method: str):
        async def wrapper(request, context: grpc.aio.ServicerContext):
            started, code, subject = time.perf_counter(), grpc.StatusCode.OK, None
            with self._span(method, context) as span:
                try:
                    principal = self._authorize(method, context)
                    subject = principal.subject
                    token = current_principal.set(principal)
                    try:
                        return await fn(request, context)
                    finally:
                        current_principal.reset(token)
                except CdpError as e:
                    code = e.code
                    span.set_status(trace.Status(trace.StatusCode.ERROR, str(e)))
                    await context.abort(code, str(e))
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except Exception as e:
                    code = grpc.StatusCode.INTERNAL
                    span.record_exception(e)
                    trace_id = format(span.get_span_context().trace_id, "032x")
                    log.exception("rpc failed", method=method)
                    await context.abort(code, f"internal error (trace id {trace_id})")
                finally:
                    log.info("rpc", method=method, code=code.name, subject=subject,
                             duration_ms=round((time.perf_counter() - started) * 1000, 2))

        return wrapper

    def _wrap_stream(self, fn: Callable, method: str):
        async def wrapper(request, context: grpc.aio.ServicerContext):
            started, code, subject = time.perf_counter(), grpc.StatusCode.OK, None
            with self._span(method, context):
                try:
                    principal = self._authorize(method, context)
                    subject = principal.subject
                    current_principal.set(principal)
                    async for item in fn(request, context):
                        yield item
                except CdpError as e:
                    code = e.code
                    await context.abort(code, str(e))
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except Exception:
                    code = grpc.StatusCode.INTERNAL
                    log.exception("rpc failed", method=method)
                    await context.abort(code, "internal error")
                finally:
                    log.info("rpc", method=method, code=code.name, subject=subject,
                             duration_ms=round((time.perf_counter() - started) * 1000, 2))

        return wrapper


class _AddMetadata:
    """Adds metadata (from `extra()`) to a call."""

    def __init__(self, extra: Callable[[], list[tuple[str, str]]]):
        self.extra = extra

    async def _add(self, continuation, details, request):
        metadata = list(details.metadata or []) + self.extra()
        details = grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                             details.wait_for_ready)
        return await continuation(details, request)


class _UnaryUnary(_AddMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    intercept_unary_unary = _AddMetadata._add


class _UnaryStream(_AddMetadata, grpc.aio.UnaryStreamClientInterceptor):
    intercept_unary_stream = _AddMetadata._add


class _StreamUnary(_AddMetadata, grpc.aio.StreamUnaryClientInterceptor):
    intercept_stream_unary = _AddMetadata._add


class _StreamStream(_AddMetadata, grpc.aio.StreamStreamClientInterceptor):
    intercept_stream_stream = _AddMetadata._add


def metadata_interceptors(extra: Callable[[], list[tuple[str, str]]]) -> list:
    """One interceptor per call shape: grpc.aio files each interceptor under the first
    shape it implements only, so one object cannot serve them all."""
    return [cls(extra) for cls in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]


def trace_interceptors() -> list:
    """Carry the current trace context to the server in W3C metadata."""
    return metadata_interceptors(lambda: list(inject_headers().items()))


def channel(target: str, token: str | None = None) -> grpc.aio.Channel:
    """A client channel with trace propagation and, when given, a bearer token, on every
    call shape (unary and streaming)."""
    interceptors = trace_interceptors()
    if token:
        bearer = [("authorization", f"Bearer {token}")]
        interceptors = metadata_interceptors(lambda: bearer) + interceptors
    return grpc.aio.insecure_channel(target, interceptors=interceptors)


class GrpcServer:
    """A grpc.aio server with health, reflection and the CDP interceptor."""

    def __init__(self, *, secret: str, scopes: dict[str, str], service_names: Iterable[str]):
        self.server = grpc.aio.server(
            interceptors=[ServerInterceptor(secret, scopes)],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names = list(service_names)
        reflection.enable_server_reflection(
            [*self.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.server,
        )
        self.port = 0

    def bind(self, host: str, port: int) -> int:
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind gRPC port {host}:{port}")
        return self.port

    async def start(self) -> None:
        await self.server.start()

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def stop(self, grace_s: float) -> None:
        await self.server.stop(grace_s)
