"""How fast an owner finds a hot key that is read at a modest rate, in the data-plane simulation.

The sampling gap follows the policy's ``rate`` (``HotKeyPolicy.sample_every``): a key read at
twice the rate turns hot and is copied to every other node within a second or two of mesh time,
and a key read at a quarter of the rate never does. A failure prints its seed
(``MESHCACHE_SIM_SEED=N`` replays it).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable

import pytest
import trio
import trio.testing

from meshcache.errors import MeshcacheError
from meshcache.store.hotpolicy import HotKeyPolicy
from meshcache.store.policy import NamespacePolicy
from meshcache.testing.simdata import LinkFaults, SimMesh
from tests.sim.seeds import sim_seeds

NS = "hot"
RATE = 20.0
POLICY = NamespacePolicy(replicas=2, hot=HotKeyPolicy(share=0.01, rate=RATE, lease=2.0))
LAN = LinkFaults(delay=0.0005, jitter=0.002)
#: Background reads a second over the mesh, spread over many cold keys.
BACKGROUND = 600
SEEDS = sim_seeds(3)
#: The key that warms up and cools down.
KEY = b"warm:1"


@pytest.mark.parametrize(
    ("rate", "gap"), [(0.0, 2), (20.0, 2), (45.0, 4), (100.0, 10), (160.0, 16), (5000.0, 16)]
)
def test_the_sampling_gap_gives_a_key_read_at_the_rate_ten_samples_a_second(
    rate: float, gap: int
) -> None:
    assert HotKeyPolicy(rate=rate).sample_every == gap


async def _read(
    mesh: SimMesh, key_of: Callable[[random.Random], bytes], per_second: float, rng: random.Random
) -> None:
    """Reads through random nodes at ``per_second``, each of the key ``key_of(rng)`` draws."""
    while True:
        with contextlib.suppress(MeshcacheError):
            await mesh.client(rng.choice(mesh.ids), NS, "GET", key_of(rng))
        await trio.sleep(rng.expovariate(per_second))


def _copies(mesh: SimMesh, key: bytes) -> list[str]:
    return [n for n in mesh.ids if (NS, key) in mesh.nodes[n].parts.hot.area]


async def _mesh_with_background(nursery: trio.Nursery, seed: int) -> tuple[SimMesh, random.Random]:
    """A 3-node mesh running in ``nursery``, :data:`KEY` written, and a uniform background of
    reads over many cold keys; the mesh and the random source the readers draw from."""
    mesh = SimMesh(seed, 3, policies={NS: POLICY}, link=LAN)
    rng = random.Random(seed)
    await nursery.start(mesh.run)
    await mesh.client("n0", NS, "SET", KEY, b"v" * 100)
    for _ in range(6):
        nursery.start_soon(
            _read, mesh, lambda r: b"cold:%d" % r.randrange(100_000), BACKGROUND / 6, rng
        )
    return mesh, rng


async def _copied_after(seed: int, reads_per_second: float, timeout: float) -> float | None:
    """Mesh seconds from the first read of a key read at ``reads_per_second`` (over a uniform
    background) until every other node holds a copy; None if not within ``timeout``."""
    key = KEY
    async with trio.open_nursery() as nursery:
        mesh, rng = await _mesh_with_background(nursery, seed)
        await trio.sleep(3.0)  # the sketches hold the background's counts
        nursery.start_soon(_read, mesh, lambda r: key, reads_per_second, rng)
        owner = mesh.owners(NS, key)[0]
        others = [n for n in mesh.ids if n != owner]
        started = trio.current_time()
        took: float | None = None
        while took is None and trio.current_time() - started < timeout:
            if _copies(mesh, key) == others:
                took = trio.current_time() - started
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    return took


@pytest.mark.trio
@pytest.mark.parametrize("seed", SEEDS)
async def test_a_key_read_at_twice_the_rate_is_copied_everywhere_within_two_seconds(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    took = await _copied_after(seed, 2 * RATE, timeout=10.0)
    assert took is not None, f"seed {seed}: a key read {2 * RATE:g} times a second never turned hot"
    assert took < 2.0, f"seed {seed}: copies on every other node after {took:.2f} s of mesh time"


@pytest.mark.trio
@pytest.mark.parametrize("seed", SEEDS)
async def test_a_key_read_at_a_quarter_of_the_rate_never_turns_hot(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    assert await _copied_after(seed, RATE / 4, timeout=5.0) is None, f"seed {seed}"


@pytest.mark.trio
@pytest.mark.parametrize("seed", SEEDS)
async def test_a_key_whose_reads_stop_cools_within_a_second_and_stays_cold(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    key = KEY
    async with trio.open_nursery() as nursery:
        mesh, rng = await _mesh_with_background(nursery, seed)
        jump = trio.CancelScope()

        async def jumped() -> None:
            with jump:
                await _read(mesh, lambda r: key, 20 * RATE, rng)

        nursery.start_soon(jumped)
        owner = mesh.owners(NS, key)[0]
        others = [n for n in mesh.ids if n != owner]
        await mesh.wait_until(
            lambda: _copies(mesh, key) == others, timeout=5.0, what="copies", poll=0.01
        )
        await trio.sleep(5.0)  # hot for a while: its counts are far above the thresholds
        jump.cancel()
        took = await mesh.wait_until(
            lambda: not _copies(mesh, key), timeout=10.0, what="no copies", poll=0.01
        )
        assert took < 1.5, f"seed {seed}: copies left {took:.2f} s after the reads stopped"
        await trio.sleep(3.0)
        hot = mesh.nodes[owner].parts.hot
        assert hot.stats["keys_turned_hot"] == 1, f"seed {seed}: turned hot again"
        assert not _copies(mesh, key), f"seed {seed}"
        nursery.cancel_scope.cancel()


@pytest.mark.trio
@pytest.mark.parametrize("seed", SEEDS)
async def test_a_key_read_steadily_at_twice_the_rate_stays_hot(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    key = KEY
    async with trio.open_nursery() as nursery:
        mesh, rng = await _mesh_with_background(nursery, seed)
        nursery.start_soon(_read, mesh, lambda r: key, 2 * RATE, rng)
        owner = mesh.owners(NS, key)[0]
        await mesh.wait_until(
            lambda: len(_copies(mesh, key)) == 2, timeout=10.0, what="copies", poll=0.01
        )
        await trio.sleep(30.0)
        stats = mesh.nodes[owner].parts.hot.stats
        assert (stats["keys_turned_hot"], stats["keys_cooled"]) == (1, 0), f"seed {seed}: {stats}"
        nursery.cancel_scope.cancel()
