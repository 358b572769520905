"""The gRPC side of the emulators: the unary handler around each engine call, turning an RpcError into its status."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.cloud.location import locations_pb2

from common.local.emulators.kit.locations import LOCATIONS_SERVICE, Locations
from common.local.emulators.kit.rpc import Code, RpcError, invalid, not_found

__all__ = ["Code", "RpcError", "grpc_status", "invalid", "locations_handler", "not_found", "unary"]


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
    """A unary handler: deserialize with ``request_cls`` (proto-plus or raw protobuf), call ``fn`` (with
    ``convert(request)`` when given), and turn an :class:`RpcError` into its status; any other exception is an
    emulator bug, answered INTERNAL with its description instead of gRPC's bare UNKNOWN."""

    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(convert(request) if convert else request)
        except RpcError as exc:
            context.abort(grpc_status(exc.code), exc.message)
        except Exception as exc:
            log.exception("%s failed", method)
            context.abort(grpc.StatusCode.INTERNAL, f"emulator error in {method}: {type(exc).__name__}: {exc}")

    deserialize = getattr(request_cls, "deserialize", None) or request_cls.FromString
    return grpc.unary_unary_rpc_method_handler(handler, request_deserializer=deserialize, response_serializer=serialize)


def locations_handler(locations: Locations, *, log: logging.Logger) -> grpc.GenericRpcHandler:
    """``google.cloud.location.Locations`` (ListLocations, GetLocation), which the stock clients call as
    ``client.list_locations`` and ``client.get_location``."""

    def serialize(message: Any) -> bytes:
        return bytes(message.SerializeToString())

    return grpc.method_handlers_generic_handler(
        LOCATIONS_SERVICE,
        {
            "ListLocations": unary(
                "ListLocations", locations.list_locations, locations_pb2.ListLocationsRequest, serialize, log=log
            ),
            "GetLocation": unary(
                "GetLocation", locations.get_location, locations_pb2.GetLocationRequest, serialize, log=log
            ),
        },
    )
