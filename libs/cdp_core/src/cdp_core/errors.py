"""Domain errors that map to gRPC status codes (see grpc_server's error interceptor).

Raise these from service code; messages name the field and the limit, and never carry
the offending value (it may be personal data).
"""

from __future__ import annotations

import grpc


class CdpError(Exception):
    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message if field is None else f"{field}: {message}")
        self.field = field


class InvalidArgument(CdpError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(CdpError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(CdpError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(CdpError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(CdpError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(CdpError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(CdpError):
    code = grpc.StatusCode.UNAVAILABLE


class PoisonMessage(Exception):
    """A message that can never be processed: it goes to failed events and is terminated."""
