"""What both emulators share: an error that becomes a gRPC status, and the unary handler around each RPC."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc


class RpcError(Exception):
    """Raised inside a handler; becomes a gRPC status, so the stock client raises the matching
    ``google.api_core.exceptions`` (NOT_FOUND → NotFound, ALREADY_EXISTS → AlreadyExists, …)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.NOT_FOUND, message)


def unary(
    method: str,
    fn: Callable[[Any], Any],
    request_cls: Any,
    serialize: Callable[[Any], bytes],
    *,
    log: logging.Logger,
    convert: Callable[[Any], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """A unary handler: deserialize with the proto-plus ``request_cls``, call ``fn`` (with ``convert(request)``
    when given), and turn an :class:`RpcError` into its status; any other exception is an emulator bug,
    answered INTERNAL with its description instead of gRPC's bare UNKNOWN."""

    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(convert(request) if convert else request)
        except RpcError as exc:
            context.abort(exc.code, exc.message)
        except Exception as exc:
            log.exception("%s failed", method)
            context.abort(grpc.StatusCode.INTERNAL, f"emulator error in {method}: {type(exc).__name__}: {exc}")

    return grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=request_cls.deserialize, response_serializer=serialize
    )
