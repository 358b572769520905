"""Canonical status codes, the one error the engines raise, and the one HTTP status → code table."""

from __future__ import annotations

import enum


class Code(enum.IntEnum):
    """``google.rpc.Code`` (google/rpc/code.proto): what a gRPC server sends as its status, a REST one as HTTP."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RpcError(Exception):
    """Raised by an engine; the server turns ``code`` into its transport's status, so the stock gRPC client
    raises the matching ``google.api_core.exceptions`` (NOT_FOUND → NotFound, ALREADY_EXISTS → AlreadyExists, …).

    ``code`` is a :class:`Code`; anything with the same ``name`` (a ``grpc.StatusCode``) is accepted too.
    """

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RpcError:
    return RpcError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> RpcError:
    return RpcError(Code.NOT_FOUND, message)


# HTTP status of a target's answer → the code an attempt records (Cloud Tasks' Attempt.response_status,
# Cloud Scheduler's Job.status). The inverse of the HTTP mapping in google/rpc/code.proto; 416 (Range Not
# Satisfiable) is OUT_OF_RANGE, the code for "past the valid range", though code.proto sends that one out as 400.
_HTTP_TO_CODE = {
    400: Code.INVALID_ARGUMENT,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.NOT_FOUND,
    409: Code.ABORTED,
    412: Code.FAILED_PRECONDITION,
    416: Code.OUT_OF_RANGE,
    429: Code.RESOURCE_EXHAUSTED,
    499: Code.CANCELLED,
    500: Code.INTERNAL,
    501: Code.UNIMPLEMENTED,
    503: Code.UNAVAILABLE,
    504: Code.DEADLINE_EXCEEDED,
}


def http_to_code(status: int) -> Code:
    """The code for an HTTP answer: 2xx OK, the table above, other 4xx FAILED_PRECONDITION, other 5xx INTERNAL,
    anything else UNKNOWN."""
    if 200 <= status < 300:
        return Code.OK
    if status in _HTTP_TO_CODE:
        return _HTTP_TO_CODE[status]
    if 400 <= status < 500:
        return Code.FAILED_PRECONDITION
    if 500 <= status < 600:
        return Code.INTERNAL
    return Code.UNKNOWN


# Code → HTTP status, as google/rpc/code.proto documents each code's HTTP mapping (what a REST front answers).
_CODE_TO_HTTP = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


def code_to_http(code: Code) -> int:
    """The HTTP status google/rpc/code.proto gives a code (``grpc.StatusCode`` accepted by name)."""
    return _CODE_TO_HTTP[Code[code.name]]
