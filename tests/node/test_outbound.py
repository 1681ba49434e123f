"""meshcache.node.data.outbound: how a hand-off stream cuts its BULK batches."""

from __future__ import annotations

import random
from typing import Any

import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meshcache.node.data.outbound import BIN_HEADER, BULK_BYTES, BULK_RECORDS, Outbound
from meshcache.node.data.replication import ByteBudget


def _reference_cuts(chunks: list[list[bytes]]) -> tuple[list[int], int]:
    """Batch sizes (items) cut record by record: a batch goes once it reaches BULK_BYTES
    (each item with its header) or BULK_RECORDS; and the items left unsent."""
    cuts: list[int] = []
    items = size = 0
    for plain in chunks:
        for at in range(0, len(plain), 2):
            items += 2
            size += len(plain[at]) + len(plain[at + 1]) + 2 * BIN_HEADER
            if size >= BULK_BYTES or items >= 2 * BULK_RECORDS:
                cuts.append(items)
                items = size = 0
    return cuts, items


async def _cuts(chunks: list[list[bytes]]) -> tuple[list[int], int]:
    sent: list[list[Any]] = []

    async def call(op: str, payload: list[Any]) -> Any:
        sent.append(payload)
        return [len(payload) // 2, 0, 0, 0]

    out = Outbound(
        "t", None, call, lambda *_: None, ByteBudget(1 << 40, 1 << 40, 0.0), trio.current_time
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(out._run)
        for plain in chunks:
            await out._take_blobs(plain)
        out._done.set()
    return [len(p) for p in sent], len(out._blobs)


@settings(max_examples=60, deadline=None)
@example(seed=1, counts=[BULK_RECORDS], largest=12)  # the chunk ends a batch by count
@given(
    seed=st.integers(0, 2**32),
    counts=st.lists(st.integers(0, 2500), min_size=1, max_size=4),
    largest=st.sampled_from([12, 200, 3000, 70_000]),
)
def test_bulk_batches_are_cut_after_the_record_that_fills_them(
    seed: int, counts: list[int], largest: int
) -> None:
    """Chunks of ``counts`` records of random sizes up to ``largest`` bytes: small ones fill
    a batch by count, large ones by bytes, one over BULK_BYTES alone."""
    rng = random.Random(seed)
    chunks = [
        [b for _ in range(n) for b in (b"k" * rng.randint(1, 64), b"v" * rng.randint(8, largest))]
        for n in counts
    ]
    assert trio.run(_cuts, chunks) == _reference_cuts(chunks)
