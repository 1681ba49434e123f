"""The data-port protocol, sans-I/O: framing, the op table, request and response codecs."""

from __future__ import annotations

from meshcache.wire.address import Address, format_address, parse_address, parse_addresses
from meshcache.wire.frame import (
    DEFAULT_MAX_FRAME,
    FrameReader,
    FrameTooLarge,
    Request,
    Response,
    decode_request,
    decode_response,
    encode_error,
    encode_ok,
    encode_request,
    pack_frame,
)
from meshcache.wire.ops import DATA_HANDLER, OPS, Limits, OpKind, OpSpec, Permission, normalize_args

__all__ = [
    "DATA_HANDLER",
    "DEFAULT_MAX_FRAME",
    "OPS",
    "Address",
    "FrameReader",
    "FrameTooLarge",
    "Limits",
    "OpKind",
    "OpSpec",
    "Permission",
    "Request",
    "Response",
    "decode_request",
    "decode_response",
    "encode_error",
    "encode_ok",
    "encode_request",
    "format_address",
    "normalize_args",
    "pack_frame",
    "parse_address",
    "parse_addresses",
]
