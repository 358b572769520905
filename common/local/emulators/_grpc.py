"""The gRPC side of the emulators: the unary handler around each engine call, turning an RpcError into its status."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc

from common.local.emulators.kit.rpc import Code, RpcError, invalid, not_found

__all__ = ["Code", "RpcError", "grpc_status", "invalid", "not_found", "unary"]


def grpc_status(code: Code) -> grpc.StatusCode:
    """The gRPC status of a canonical code (same names; a ``grpc.StatusCode`` passes through)."""
    return grpc.StatusCode[code.name]


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
            context.abort(grpc_status(exc.code), exc.message)
        except Exception as exc:
            log.exception("%s failed", method)
            context.abort(grpc.StatusCode.INTERNAL, f"emulator error in {method}: {type(exc).__name__}: {exc}")

    return grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=request_cls.deserialize, response_serializer=serialize
    )
