"""What the generator sends: key space, value size, GET/SET mix, key distribution.

Everything a run sends is decided before the clock starts: :func:`build_pool` turns a
:class:`Workload` into an :class:`OpPool` of ready-to-send request frames and the exact reply each
one should get, grouped into pipeline batches that are already joined into one ``bytes`` each.
The hot loop only steps an index through that pool.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from tools.bench.protocols import Protocol

KEY_FORMAT = b"key:%012d"  # redis-benchmark's ``key:__rand_int__`` with -r, so keys match


@dataclass(frozen=True, slots=True)
class Workload:
    """A workload, independent of the server it runs against.

    Attributes:
        keys: size of the key space; every key is preloaded before a run, so GETs hit.
        value_size: bytes per value.
        get_ratio: fraction of requests that are GET (the rest are SET), 0.0 to 1.0.
        distribution: ``"uniform"`` or ``"zipf"`` (key ``i`` has weight ``1 / (i+1)**zipf_s``).
        zipf_s: the zipf exponent (0.99 is YCSB's default).
    """

    keys: int = 100_000
    value_size: int = 100
    get_ratio: float = 0.9
    distribution: str = "uniform"
    zipf_s: float = 0.99

    def __post_init__(self) -> None:
        if self.keys < 1:
            raise ValueError("the key space needs at least one key")
        if self.value_size < 0:
            raise ValueError("value size must be >= 0")
        if not 0.0 <= self.get_ratio <= 1.0:
            raise ValueError("get ratio must be between 0 and 1")
        if self.distribution not in ("uniform", "zipf"):
            raise ValueError("distribution is 'uniform' or 'zipf'")

    @property
    def mix(self) -> str:
        """A short label, e.g. ``"90/10"`` (GET%/SET%)."""
        get = round(self.get_ratio * 100)
        return f"{get}/{100 - get}"

    def value(self) -> bytes:
        """The one value every key holds: preload and every SET write the same bytes, so the
        reply to any GET is known in advance."""
        return b"v" * self.value_size


def key(index: int) -> bytes:
    return KEY_FORMAT % index


@dataclass(frozen=True, slots=True)
class ReplyTemplates:
    """The exact bytes the server answers a GET of a preloaded key and a SET with."""

    get: bytes
    set: bytes


@dataclass(frozen=True, slots=True)
class OpPool:
    """Pre-built requests, one per op, and the same ops joined into pipeline batches.

    ``replies[i]`` is the reply expected for ``requests[i]``; batch ``j`` holds ops
    ``j*depth .. j*depth+depth-1``.
    """

    requests: list[bytes]
    replies: list[bytes]
    depth: int
    batch_requests: list[bytes]
    batch_replies: list[bytes]


def sample_keys(workload: Workload, n: int, rng: random.Random) -> list[int]:
    """``n`` key indexes drawn from the workload's distribution."""
    if workload.distribution == "uniform":
        return [rng.randrange(workload.keys) for _ in range(n)]
    s = workload.zipf_s
    cum = list(itertools.accumulate(1.0 / (i + 1) ** s for i in range(workload.keys)))
    return rng.choices(range(workload.keys), cum_weights=cum, k=n)


def build_pool(
    workload: Workload,
    protocol: Protocol,
    templates: ReplyTemplates,
    *,
    size: int,
    depth: int,
    seed: int,
) -> OpPool:
    """An :class:`OpPool` of ``size`` ops (rounded up to whole batches of ``depth``)."""
    if depth < 1:
        raise ValueError("pipeline depth must be >= 1")
    size = max(depth, -(-size // depth) * depth)
    rng = random.Random(seed)
    value = workload.value()
    get_frames: dict[int, bytes] = {}
    set_frames: dict[int, bytes] = {}
    requests: list[bytes] = []
    replies: list[bytes] = []
    ratio = workload.get_ratio
    for index in sample_keys(workload, size, rng):
        if rng.random() < ratio:
            frame = get_frames.get(index)
            if frame is None:
                frame = get_frames[index] = protocol.get(key(index))
            requests.append(frame)
            replies.append(templates.get)
        else:
            frame = set_frames.get(index)
            if frame is None:
                frame = set_frames[index] = protocol.set(key(index), value)
            requests.append(frame)
            replies.append(templates.set)
    batch_requests = [b"".join(requests[i : i + depth]) for i in range(0, size, depth)]
    batch_replies = [b"".join(replies[i : i + depth]) for i in range(0, size, depth)]
    return OpPool(requests, replies, depth, batch_requests, batch_replies)
