"""Compact msgpack encoding of gossip messages and the sealed envelope around them.

Envelope (one UDP packet or one push/pull payload)::

    version:u8 | flags:u8 | body                                 (no cluster key)
    version:u8 | flags:u8 | nonce[12] | AES-GCM(body) | tag[16]  (flags & SIGNED: sealed)
    body = msgpack array [sender:str, boot:int, counter:int, msg, msg, ...]

With a cluster key the body is sealed (:meth:`Keyring.seal`): encrypted, so addresses and
metadata cannot be read on the wire, and authenticated together with ``version | flags`` by
the GCM tag. Flag ``STREAM`` separates push/pull payloads from UDP packets so neither can be
replayed as the other. Each message is a msgpack
array whose first element is its :class:`MsgType`; unknown types and wrong field types make the
whole envelope invalid. Every decode failure is a :class:`DecodeError` whose ``reason`` is the
stats key under which the packet is counted.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TypeAlias

import msgpack

from meshcache.errors import RemoteProtocolError
from meshcache.gossip.endpoint import Address
from meshcache.gossip.keyring import SEAL_OVERHEAD, Keyring
from meshcache.gossip.member import MAX_U63, MAX_ZONE_CHARS, MemberState, NodeMeta

VERSION = 2
FLAG_SIGNED = 0x01  # sealed: encrypted and authenticated under the cluster keyring
FLAG_STREAM = 0x02
_KNOWN_FLAGS = FLAG_SIGNED | FLAG_STREAM
MAX_NAME_BYTES = 128
MAX_HOST_CHARS = 255
MAX_INCARNATION = 2**62


class DecodeError(RemoteProtocolError):
    """Bytes from a peer that are not a valid gossip envelope or message."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class MsgType(enum.IntEnum):
    PING = 0
    PING_REQ = 1
    ACK = 2
    NACK = 3
    ALIVE = 4
    SUSPECT = 5
    DEAD = 6
    LEFT = 7
    PUSH_PULL = 8


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int
    target: str  # the name the sender believes lives at our address


@dataclass(frozen=True, slots=True)
class PingReq:
    seq: int
    target: str
    target_addr: Address


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int


@dataclass(frozen=True, slots=True)
class Nack:
    seq: int


@dataclass(frozen=True, slots=True)
class Alive:
    name: str
    incarnation: int
    address: Address
    meta: NodeMeta


@dataclass(frozen=True, slots=True)
class Suspect:
    name: str
    incarnation: int
    sender: str


@dataclass(frozen=True, slots=True)
class Dead:
    name: str
    incarnation: int
    sender: str


@dataclass(frozen=True, slots=True)
class Left:
    name: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One member in a push/pull full-state exchange."""

    name: str
    address: Address
    incarnation: int
    state: MemberState
    meta: NodeMeta


@dataclass(frozen=True, slots=True)
class PushPull:
    join: bool
    members: tuple[MemberRecord, ...]


Message: TypeAlias = Ping | PingReq | Ack | Nack | Alive | Suspect | Dead | Left | PushPull


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    boot: int
    counter: int
    messages: tuple[Message, ...]


# --- encoding ---------------------------------------------------------------------------


def _meta_list(meta: NodeMeta) -> list[object]:
    return [
        meta.zone,
        meta.data_port,
        meta.raft_port,
        meta.admin_port,
        meta.config_version,
        meta.load,
    ]


def _as_list(msg: Message) -> list[object]:
    if isinstance(msg, Ping):
        return [MsgType.PING, msg.seq, msg.target]
    if isinstance(msg, PingReq):
        return [MsgType.PING_REQ, msg.seq, msg.target, msg.target_addr[0], msg.target_addr[1]]
    if isinstance(msg, Ack):
        return [MsgType.ACK, msg.seq]
    if isinstance(msg, Nack):
        return [MsgType.NACK, msg.seq]
    if isinstance(msg, Alive):
        host, port = msg.address
        return [MsgType.ALIVE, msg.name, msg.incarnation, host, port, _meta_list(msg.meta)]
    if isinstance(msg, Suspect):
        return [MsgType.SUSPECT, msg.name, msg.incarnation, msg.sender]
    if isinstance(msg, Dead):
        return [MsgType.DEAD, msg.name, msg.incarnation, msg.sender]
    if isinstance(msg, Left):
        return [MsgType.LEFT, msg.name, msg.incarnation]
    members = [
        [m.name, m.address[0], m.address[1], m.incarnation, int(m.state), _meta_list(m.meta)]
        for m in msg.members
    ]
    return [MsgType.PUSH_PULL, msg.join, members]


def encode_message(msg: Message) -> bytes:
    """One message as msgpack bytes, ready to be placed in an envelope."""
    return bytes(msgpack.packb(_as_list(msg), use_bin_type=True))


def envelope_overhead(sender: str, *, signed: bool) -> int:
    """Upper bound of the bytes an envelope adds around its messages."""
    # 2 prefix bytes, array header (5), name (<= 2 + len), two uint64 (9 each), nonce and tag.
    return 2 + 5 + 2 + len(sender.encode()) + 18 + (SEAL_OVERHEAD if signed else 0)


def encode_envelope(
    keyring: Keyring,
    sender: str,
    boot: int,
    counter: int,
    messages: list[bytes],
    *,
    stream: bool = False,
) -> bytes:
    """Wrap pre-encoded ``messages`` in an envelope, sealed when the keyring has keys."""
    flags = (FLAG_SIGNED if keyring.enabled else 0) | (FLAG_STREAM if stream else 0)
    packer = msgpack.Packer(use_bin_type=True)
    body = b"".join(
        [
            packer.pack_array_header(3 + len(messages)),
            packer.pack(sender),
            packer.pack(boot),
            packer.pack(counter),
            *messages,
        ]
    )
    header = bytes([VERSION, flags])
    if keyring.enabled:
        return header + keyring.seal(header, body)
    return header + body


# --- decoding ---------------------------------------------------------------------------


def _int(value: object, low: int = 0, high: int = 2**64 - 1) -> int:
    if type(value) is not int or not low <= value <= high:
        raise DecodeError("bad_field", "expected an integer in range")
    return value


def _name(value: object) -> str:
    if type(value) is not str or not value or len(value.encode()) > MAX_NAME_BYTES:
        raise DecodeError("bad_field", "bad member name")
    return value


def _host(value: object) -> str:
    """A host a socket can be asked to send to: an IP literal or a name whose IDNA form is
    printable ASCII without spaces (what ``sendto`` and trio encode a host name with). Anything
    else would make every later send to it fail, so it is refused at the door."""
    if type(value) is not str or not value or len(value) > MAX_HOST_CHARS:
        raise DecodeError("bad_field", "bad host")
    try:
        encoded = value.encode("idna").decode("ascii")
    except UnicodeError:
        raise DecodeError("bad_field", "host not IDNA-encodable") from None
    if not encoded.isprintable() or " " in encoded:
        raise DecodeError("bad_field", "host has control characters or spaces")
    return value


def _address(host: object, port: object) -> Address:
    return Address(_host(host), _int(port, 0, 65535))


def _meta(value: object) -> NodeMeta:
    if type(value) is not list or len(value) != 6:
        raise DecodeError("bad_field", "bad meta")
    zone, data_port, raft_port, admin_port, config_version, load = value
    if type(zone) is not str or len(zone) > MAX_ZONE_CHARS:
        raise DecodeError("bad_field", "bad zone")
    if type(load) is int:
        load = float(load)
    if type(load) is not float or not math.isfinite(load):
        raise DecodeError("bad_field", "bad load")
    return NodeMeta(
        zone=zone,
        data_port=_int(data_port, 0, 65535),
        raft_port=_int(raft_port, 0, 65535),
        admin_port=_int(admin_port, 0, 65535),
        config_version=_int(config_version, 0, MAX_U63),
        load=load,
    )


def _inc(value: object) -> int:
    return _int(value, 0, MAX_INCARNATION)


def _fields(raw: list[object], n: int) -> list[object]:
    if len(raw) != n:
        raise DecodeError("bad_field", f"expected {n} fields, got {len(raw)}")
    return raw


def _member_record(raw: object) -> MemberRecord:
    if type(raw) is not list or len(raw) != 6:
        raise DecodeError("bad_field", "bad member record")
    name, host, port, inc, state, meta = raw
    try:
        member_state = MemberState(_int(state, 0, 3))
    except ValueError:  # pragma: no cover - range-checked above
        raise DecodeError("bad_field", "bad state") from None
    return MemberRecord(_name(name), _address(host, port), _inc(inc), member_state, _meta(meta))


def decode_message(raw: object) -> Message:
    """Validate one unpacked message; raise DecodeError on anything unexpected."""
    if type(raw) is not list or not raw:
        raise DecodeError("malformed", "message is not a non-empty array")
    kind = raw[0]
    if type(kind) is not int:
        raise DecodeError("bad_field", "message type is not an integer")
    if kind == MsgType.PING:
        _, seq, target = _fields(raw, 3)
        return Ping(_int(seq), _name(target))
    if kind == MsgType.PING_REQ:
        _, seq, target, host, port = _fields(raw, 5)
        return PingReq(_int(seq), _name(target), _address(host, port))
    if kind == MsgType.ACK:
        _, seq = _fields(raw, 2)
        return Ack(_int(seq))
    if kind == MsgType.NACK:
        _, seq = _fields(raw, 2)
        return Nack(_int(seq))
    if kind == MsgType.ALIVE:
        _, name, inc, host, port, meta = _fields(raw, 6)
        return Alive(_name(name), _inc(inc), _address(host, port), _meta(meta))
    if kind == MsgType.SUSPECT:
        _, name, inc, sender = _fields(raw, 4)
        return Suspect(_name(name), _inc(inc), _name(sender))
    if kind == MsgType.DEAD:
        _, name, inc, sender = _fields(raw, 4)
        return Dead(_name(name), _inc(inc), _name(sender))
    if kind == MsgType.LEFT:
        _, name, inc = _fields(raw, 3)
        return Left(_name(name), _inc(inc))
    if kind == MsgType.PUSH_PULL:
        _, join, members = _fields(raw, 3)
        if type(join) is not bool or type(members) is not list:
            raise DecodeError("bad_field", "bad push/pull")
        return PushPull(join, tuple(_member_record(m) for m in members))
    raise DecodeError("unknown_type", str(kind))


def decode_envelope(keyring: Keyring, data: bytes, *, stream: bool, max_size: int) -> Envelope:
    """Check size, version and channel, open the seal, then decode every message.

    Raises:
        DecodeError: with ``reason`` one of truncated, oversized, bad_version, bad_flags,
            wrong_channel, unsigned, unexpected_signature, bad_mac, malformed, bad_field,
            unknown_type.
    """
    if len(data) > max_size:
        raise DecodeError("oversized")
    if len(data) < 3:
        raise DecodeError("truncated")
    if data[0] != VERSION:
        raise DecodeError("bad_version")
    flags = data[1]
    if flags & ~_KNOWN_FLAGS:
        raise DecodeError("bad_flags")
    if bool(flags & FLAG_STREAM) != stream:
        raise DecodeError("wrong_channel")
    if flags & FLAG_SIGNED:
        if not keyring.enabled:
            raise DecodeError("unexpected_signature")
        if len(data) < 3 + SEAL_OVERHEAD:
            raise DecodeError("truncated")
        opened = keyring.open(data[:2], data[2:])
        if opened is None:  # another key, a removed one, or altered bytes
            raise DecodeError("bad_mac")
        body = opened
    else:
        if keyring.enabled:
            raise DecodeError("unsigned")
        body = data[2:]
    try:
        raw = msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=True,
            timestamp=0,
        )
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise DecodeError("malformed", type(exc).__name__) from None
    if type(raw) is not list or len(raw) < 4:
        raise DecodeError("malformed", "envelope is not an array of >= 4 items")
    sender, boot, counter = raw[0], raw[1], raw[2]
    return Envelope(
        _name(sender), _int(boot), _int(counter), tuple(decode_message(m) for m in raw[3:])
    )
