"""The data-port protocol, sans-I/O: framing, the op table, request and response codecs."""

from __future__ import annotations

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
from meshcache.wire.ops import OPS, Limits, OpKind, OpSpec, normalize_args

__all__ = [
    "DEFAULT_MAX_FRAME",
    "OPS",
    "FrameReader",
    "FrameTooLarge",
    "Limits",
    "OpKind",
    "OpSpec",
    "Request",
    "Response",
    "decode_request",
    "decode_response",
    "encode_error",
    "encode_ok",
    "encode_request",
    "normalize_args",
    "pack_frame",
]
