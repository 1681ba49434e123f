"""The handoff's ordering rules, in process on trio's autojump clock (no network)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from meshcache.control import ClusterConfig, Command
from meshcache.control.config import apply as apply_command
from meshcache.errors import MeshcacheTimeout, UnavailableError
from meshcache.node.data.handoff import BATCH_ATTEMPTS, PROPOSE_PATIENCE, SETTLE_TIMEOUT, HandOff
from meshcache.node.data.outbound import (
    BATCH_RECORDS,
    BULK_BYTES,
    BULK_RECORDS,
    SCAN_CHUNK,
    WINDOW,
)
from meshcache.node.net.peer_pool import PeerPool, PeerUnreachable
from meshcache.ring import Ring, RingMember, key_token
from meshcache.ring.diff import replacements
from meshcache.ring.tokens import RangeSet, ranges_to_wire
from meshcache.store.policy import NamespacePolicy
from meshcache.testing.instrument import longest_step
from meshcache.wire.frame import Response
from tests.node.test_dataplane import ME, OTHER, THIRD, make_plane


async def _refuse(command: Command) -> ClusterConfig:
    raise AssertionError(f"nothing should be proposed: {command}")


class Pings(PeerPool):
    """Answers a ``PING`` with the ring version in ``runs`` for the address (a member not in
    it does not answer); nothing else is sent anywhere."""

    def __init__(self, runs: dict[str, int]) -> None:
        super().__init__()
        self.runs = runs
        self.pings = 0

    async def request(  # type: ignore[override]
        self, address: Any, op: str, namespace: str, args: list[Any], **kw: Any
    ) -> Response:
        if op != "PING" or str(address) not in self.runs:
            raise PeerUnreachable(f"{op} to {address}: no peer in this test")
        self.pings += 1
        return Response(1, True, "PONG", self.runs[str(address)])


def _setup(
    versions: dict[str, int], runs: dict[str, int] | None = None
) -> tuple[HandOff, ClusterConfig, list[bytes]]:
    plane = make_plane([ME, OTHER, THIRD], replicas=1)
    plane.pool = Pings(runs or {})
    config = ClusterConfig(
        version=3,
        members=tuple(RingMember(node_id=m, address=m) for m in (ME, OTHER, THIRD)),
        namespaces={"default": NamespacePolicy(replicas=1, max_bytes=1 << 20)},
    )
    foreign = [
        k
        for k in (b"key-%d" % i for i in range(300))
        if all(m.node_id != ME for m in plane.ring.owners(k, 1))
    ]
    for key in foreign:  # held from an older ring
        plane.store.execute("default", "SET", [key, b"v", {}])
    handoff = HandOff(
        plane.store,
        ME,
        plane,
        config=lambda: config,
        propose=_refuse,
        alive=lambda node: node == ME,  # no live source: nothing is pulled over the network
        dead=lambda node: False,
        config_version_of=lambda node: versions.get(node, 0),
        rate=1 << 30,
    )
    return handoff, config, foreign


def _held(handoff: HandOff, keys: list[bytes]) -> int:
    return sum(handoff.store.execute("default", "GET", [k]) is not None for k in keys)


@pytest.mark.trio
async def test_unowned_keys_stay_until_every_member_runs_the_ring(
    autojump_clock: trio.testing.MockClock,
) -> None:
    versions = {OTHER: 3, THIRD: 2}  # THIRD still routes by the ring before
    handoff, config, foreign = _setup(versions)
    async with trio.open_nursery() as nursery:
        await nursery.start(handoff.run)
        handoff.on_install(config)
        await trio.sleep(SETTLE_TIMEOUT / 4)
        assert _held(handoff, foreign) == len(foreign)  # a lagging member may read here
        versions[THIRD] = 3
        with trio.fail_after(1):
            while _held(handoff, foreign):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert handoff.stats["records_dropped"] == len(foreign)


@pytest.mark.trio
async def test_a_member_that_answers_with_the_ring_is_not_waited_for_by_gossip(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Gossip still shows THIRD on the ring before; its own answer carries the new one.
    handoff, config, foreign = _setup({OTHER: 3, THIRD: 2}, runs={THIRD: 3})
    async with trio.open_nursery() as nursery:
        await nursery.start(handoff.run)
        start = trio.current_time()
        handoff.on_install(config)
        with trio.fail_after(1):
            while _held(handoff, foreign):
                await trio.sleep(0.001)
        assert trio.current_time() - start < 0.1
        nursery.cancel_scope.cancel()
    assert handoff.stats["settle_timeouts"] == 0
    assert handoff.dataplane.pool.pings >= 1  # type: ignore[attr-defined]


@pytest.mark.trio
async def test_a_member_that_never_catches_up_delays_the_drop_by_the_settle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    handoff, config, foreign = _setup({OTHER: 3, THIRD: 1})
    async with trio.open_nursery() as nursery:
        await nursery.start(handoff.run)
        start = trio.current_time()
        handoff.on_install(config)
        with trio.fail_after(SETTLE_TIMEOUT * 2):
            while _held(handoff, foreign):
                await trio.sleep(0.01)
        assert trio.current_time() - start >= SETTLE_TIMEOUT
        nursery.cancel_scope.cancel()
    assert handoff.stats["settle_timeouts"] >= 1


@pytest.mark.trio
async def test_a_policy_change_moves_no_key_and_a_replica_change_drops_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    versions = {OTHER: 9, THIRD: 9}
    handoff, first, foreign = _setup(versions)
    configs = [first]
    handoff._config = lambda: configs[-1]

    def install(**policy: Any) -> None:
        configs.append(
            dataclasses.replace(
                configs[-1],
                version=configs[-1].version + 1,
                namespaces={"default": NamespacePolicy(**policy)},
            )
        )
        handoff.on_install(configs[-1])

    async def passes(count: int) -> None:
        with trio.fail_after(SETTLE_TIMEOUT):
            while handoff.stats["drop_passes"] < count or handoff.held is not configs[-1]:
                await trio.sleep(0.01)
        await trio.sleep(1)  # and no pass more

    async with trio.open_nursery() as nursery:
        await nursery.start(handoff.run)
        handoff.on_install(first)
        await passes(1)
        assert _held(handoff, foreign) == 0
        # A key another member owns arrives (a lagging coordinator's write, say)...
        handoff.store.execute("default", "SET", [foreign[0], b"late", {}])
        # ... a TTL and a size bound change: the ring is the same, no key moves, none is
        # looked at (a whole-store scan per policy change was the cost before).
        install(replicas=1, max_bytes=2 << 20, default_ttl=600)
        await passes(1)
        assert handoff.stats["drop_passes"] == 1
        assert _held(handoff, foreign[:1]) == 1
        # Another replica count changes what this node owns: a pass drops what it no longer
        # holds by it.
        install(replicas=2, max_bytes=2 << 20)
        await passes(2)
        assert handoff.stats["drop_passes"] == 2
        nursery.cancel_scope.cancel()
    ring = Ring(list(first.members), first.version)
    assert _held(handoff, foreign[:1]) == (ME in {m.node_id for m in ring.owners(foreign[0], 2)})


@settings(max_examples=25, deadline=None)
@given(
    nodes=st.integers(2, 6),
    leaving=st.integers(0, 5),
    replicas=st.integers(1, 3),
    weights=st.lists(st.integers(1, 3), min_size=6, max_size=6),
)
def test_replacements_are_the_pending_owners_that_do_not_own_a_key_yet(
    nodes: int, leaving: int, replicas: int, weights: list[int]
) -> None:
    """The leaving node's push targets by token ranges == the per-key rule they replace."""
    ids = [f"10.0.0.{i}:7400" for i in range(nodes)]
    members = [
        RingMember(node_id=n, address=n, weight=weights[i], state="active")
        for i, n in enumerate(ids)
    ]
    members[leaving % nodes] = dataclasses.replace(members[leaving % nodes], state="leaving")
    ring = Ring(members, 9)
    gains = replacements(ring, replicas)
    for key in (b"k%d" % i for i in range(400)):
        now = {m.node_id for m in ring.owners(key, replicas)}
        expected = {m.node_id for m in ring.pending_owners(key, replicas)} - now
        assert {t for t, ranges in gains.items() if key_token(key) in ranges} == expected


class RecordingPool:
    """Stands in for the peer pool: answers BULK and REPL batches as an empty target would."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, int, int]] = []  # (op, records, payload bytes)

    async def call(
        self, address: object, op: str, namespace: str, args: list[Any], *, timeout: float
    ) -> Any:
        await trio.lowlevel.checkpoint()  # as a call over the network does
        payload = args[0]
        if op == "BULK":
            self.batches.append((op, len(payload) // 2, sum(map(len, payload))))
            return [len(payload) // 2, 0, 0, 0]
        self.batches.append((op, len(payload), 0))
        return [0] * len(payload)


BIG = 200_000


def _big_setup() -> tuple[HandOff, ClusterConfig, list[bytes]]:
    """``BIG`` keys held, most of them another member's by the ring, and a few tombstones."""
    handoff, config, _ = _setup({OTHER: 3, THIRD: 3})
    store = handoff.store
    store.set_policy("default", NamespacePolicy(replicas=1))  # room for every key
    keys = [b"key:%09d" % i for i in range(BIG)]
    blob = (1 << 40).to_bytes(8, "big") + b"v" * 100
    for i in range(0, BIG, 10_000):
        store.apply_blobs("default", keys[i : i + 10_000], [blob] * 10_000, 2**63)
    return handoff, config, keys


@pytest.mark.trio
async def test_dropping_unowned_keys_is_sliced() -> None:
    handoff, config, _ = _big_setup()
    ring = Ring(list(config.members), config.version)
    held = handoff.store.key_snapshot("default")
    foreign = [k for k in held if all(m.node_id != ME for m in ring.owners(k, 1))]
    with longest_step(cpu=True) as probe:  # CPU time: a busy CI preempts
        await handoff._drop_unowned(config)
    assert handoff.stats["records_dropped"] == len(foreign) > BIG // 2
    assert probe.steps >= BIG // SCAN_CHUNK, probe.describe()
    # One copy of the key list was 54 ms at once before (walking the LRU order), then 2,000
    # removals per step.
    assert probe.longest <= 0.05, probe.describe()


@pytest.mark.trio
async def test_serving_a_hand_off_is_sliced_and_batches_stay_small() -> None:
    handoff, config, keys = _big_setup()
    store = handoff.store
    for key in keys[:500]:  # typed values and tombstones travel as REPL records
        store.execute("default", "DELETE", [key])
    for key in keys[500:1000]:
        store.execute("default", "SET", [key, b"v", {"ttl": 3600}])
    pool = RecordingPool()
    handoff.dataplane.pool = pool  # type: ignore[assignment]
    handoff.dataplane.install(config)
    ranges = Ring(list(config.members), config.version).owned_ranges(OTHER, 1)
    wanted = RangeSet(ranges)
    with longest_step(cpu=True) as probe:
        sent = await handoff.handle_handoff(
            "default", {"ranges": ranges_to_wire(ranges), "to": OTHER}
        )
    expected = sum(1 for k in store.key_snapshot("default") if key_token(k) in wanted)
    tombstones = sum(1 for k in keys[:500] if key_token(k) in wanted)
    assert sent == sum(n for _, n, _ in pool.batches) == expected + tombstones
    assert any(op == "REPL" for op, _, _ in pool.batches)
    assert sum(n for op, n, _ in pool.batches if op == "REPL") >= tombstones
    for op, n, size in pool.batches:
        if op == "BULK":
            assert n <= BULK_RECORDS and size <= BULK_BYTES + 200, (n, size)
        else:
            assert n <= BATCH_RECORDS
    assert probe.steps >= BIG // SCAN_CHUNK, probe.describe()
    assert probe.longest <= 0.05, probe.describe()


class FlakyPool(RecordingPool):
    """A busy target: the first send of every ``nth`` batch gets no answer (the batch is
    applied nonetheless, as a late answer's would be); ``down``: nothing answers at all."""

    def __init__(self, nth: int = 3, down: bool = False) -> None:
        super().__init__()
        self.nth = nth
        self.down = down
        self.sends = 0
        self.timeouts = 0
        self.delivered: set[tuple[object, bytes]] = set()  # (address, key) applied

    async def call(
        self, address: object, op: str, namespace: str, args: list[Any], *, timeout: float
    ) -> Any:
        self.sends += 1
        if self.down:
            await trio.sleep(timeout)
            raise MeshcacheTimeout(f"{op} to {address}: no answer in {timeout}s")
        payload = args[0]
        keys = payload[0::2] if op == "BULK" else [key for key, _ in payload]
        self.delivered.update((address, key) for key in keys)
        if self.sends % self.nth == 0:
            self.timeouts += 1
            await trio.sleep(timeout)
            raise MeshcacheTimeout(f"{op} to {address}: no answer in {timeout}s")
        return await super().call(address, op, namespace, args, timeout=timeout)


class SlowVoter:
    """Commits every proposal, but the first ``unanswered`` of them are never answered: the
    caller sees a transport time-out while the change is in (it arrives by the config pull)."""

    def __init__(self, config: ClusterConfig, unanswered: int) -> None:
        self.config = config
        self.unanswered = unanswered
        self.proposals = 0

    async def propose(self, command: Command) -> ClusterConfig:
        self.proposals += 1
        new = apply_command(self.config, command)  # VERSION_CONFLICT as a voter would
        self.config = new
        if self.unanswered:
            self.unanswered -= 1
            await trio.sleep(6.0)
            raise MeshcacheTimeout("CONFIG_PROPOSE to the voter: no answer in 6.0s")
        return new


def _leaving_setup(
    pool: RecordingPool, voter_unanswered: int, held: int = 3000
) -> tuple[HandOff, SlowVoter, int]:
    """ME holds ``held`` keys (replicas 2 of 3 members), about to LEAVE through ``pool``."""
    plane = make_plane([ME, OTHER, THIRD], replicas=2)
    config = ClusterConfig(
        version=3,
        members=tuple(RingMember(node_id=m, address=m) for m in (ME, OTHER, THIRD)),
        namespaces={"default": NamespacePolicy(replicas=2)},
    )
    plane.store.set_policy("default", NamespacePolicy(replicas=2))
    blob = (1 << 40).to_bytes(8, "big") + b"v" * 100
    keys = [b"key:%06d" % i for i in range(held)]
    plane.store.apply_blobs("default", keys, [blob] * len(keys), 2**63)
    plane.pool = pool  # type: ignore[assignment]
    voter = SlowVoter(config, voter_unanswered)
    handoff = HandOff(
        plane.store,
        ME,
        plane,
        config=lambda: voter.config,
        propose=voter.propose,
        alive=lambda node: True,
        dead=lambda node: pool.down and node != ME if isinstance(pool, FlakyPool) else False,
        config_version_of=lambda node: voter.config.version,
        rate=1 << 30,
    )
    return handoff, voter, len(keys)


def _owed(handoff: HandOff, keys: list[bytes]) -> set[tuple[object, bytes]]:
    """(address, key) of every record ME owes a replacement once it leaves the setup's ring."""
    leaving = Ring(
        [
            RingMember(node_id=m, address=m, state="leaving" if m == ME else "active")
            for m in (ME, OTHER, THIRD)
        ],
        4,
    )
    return {
        (handoff.dataplane.address_of(target), key)
        for target, ranges in replacements(leaving, 2).items()
        for key in keys
        if key_token(key) in ranges
    }


@pytest.mark.trio
async def test_a_leave_through_a_busy_mesh_resends_and_rechecks_until_it_is_done(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pool = FlakyPool(nth=2)
    handoff, voter, held = _leaving_setup(pool, voter_unanswered=2)
    answer = await handoff.leave()
    # Both ring changes timed out on the way and were found committed: proposed once each.
    assert voter.proposals == 2
    assert voter.config.member(ME) is None
    assert answer["ring_version"] == voter.config.version == 5
    # Batches that went unanswered were sent again, and every record reached every member
    # that replaces this node for it.
    assert pool.timeouts > 0
    assert handoff.stats["handoff_batch_retries"] > 0
    plane = handoff.dataplane
    owed = _owed(handoff, plane.store.key_snapshot("default"))
    assert len(owed) >= held // 2
    assert owed <= pool.delivered
    assert answer["moved"] >= len(owed)
    assert handoff.leave_moved == answer["moved"]


@pytest.mark.trio
async def test_a_leave_whose_replacements_are_gone_is_a_typed_refusal_with_its_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pool = FlakyPool(down=True)
    handoff, voter, _ = _leaving_setup(pool, voter_unanswered=0)
    with pytest.raises(UnavailableError, match=r"moving 0 records.*send LEAVE again"):
        await handoff.leave()
    # It got as far as leaving; sent again, LEAVE goes on from there.
    assert str(voter.config.member(ME).state) == "leaving"  # type: ignore[union-attr]
    pool.down = False
    pool.nth = 10**9
    answer = await handoff.leave()
    assert voter.config.member(ME) is None
    assert answer["moved"] > 0


class OneDownPool(FlakyPool):
    """Every batch to ``down_address`` goes unanswered until ``unanswered`` of them have."""

    def __init__(self, down_address: object, unanswered: int) -> None:
        super().__init__(nth=10**9)
        self.down_address = down_address
        self.unanswered = unanswered

    async def call(
        self, address: object, op: str, namespace: str, args: list[Any], *, timeout: float
    ) -> Any:
        if address == self.down_address and self.unanswered:
            self.unanswered -= 1
            await trio.sleep(timeout)
            raise MeshcacheTimeout(f"{op} to {address}: no answer in {timeout}s")
        return await super().call(address, op, namespace, args, timeout=timeout)


@pytest.mark.trio
async def test_a_leave_scans_once_for_every_replacement_and_pushes_again_to_one_that_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One pass over the store feeds both replacements; the one whose batches went unanswered
    stops alone, and only it is pushed to again, from a pass of its own."""
    # Enough keys that the scan is still going when the stream to THIRD fails.
    handoff, _, _ = _leaving_setup(RecordingPool(), voter_unanswered=0, held=20_000)
    plane = handoff.dataplane
    # Every try of every batch in flight: the stream to THIRD fails.
    pool = OneDownPool(plane.address_of(THIRD), unanswered=BATCH_ATTEMPTS * WINDOW)
    plane.pool = pool  # type: ignore[assignment]
    scans = 0
    item_parts = handoff.store.item_parts

    def counted(namespace: str) -> Any:
        nonlocal scans
        scans += 1
        return item_parts(namespace)

    handoff.store.item_parts = counted  # type: ignore[method-assign]
    keys = handoff.store.key_snapshot("default")
    answer = await handoff.leave()
    assert scans == 2
    assert handoff.stats["leave_push_retries"] == 1
    owed = _owed(handoff, keys)
    assert {address for address, _ in owed} == {plane.address_of(OTHER), plane.address_of(THIRD)}
    assert owed <= pool.delivered
    assert answer["moved"] == len(owed) == handoff.leave_moved


@pytest.mark.trio
async def test_a_ring_change_no_voter_answers_ends_in_a_typed_refusal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    handoff, voter, _ = _leaving_setup(RecordingPool(), voter_unanswered=0)

    async def unreachable(command: Command) -> ClusterConfig:
        await trio.sleep(6.0)
        raise MeshcacheTimeout("CONFIG_PROPOSE to the voter: no answer in 6.0s")

    handoff._propose = unreachable
    started = trio.current_time()
    with pytest.raises(UnavailableError, match="no answer"):
        await handoff.leave()
    assert trio.current_time() - started >= PROPOSE_PATIENCE
    assert voter.config.member(ME) is not None


FOURTH = "10.0.0.4:7400"


@pytest.mark.trio
async def test_a_joiner_compares_its_rings_without_rebuilding_the_one_it_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ME joined (held: ring 4, ME joining) and is now active (ring 5): the gained ranges
    # compare the two, from the ring kept when ring 4 was pulled for, not a rebuilt one.
    def members(me_state: str) -> tuple[RingMember, ...]:
        return tuple(
            RingMember(node_id=m, address=m, state=me_state if m == ME else "active")
            for m in (ME, OTHER, THIRD, FOURTH)
        )

    policy = {"default": NamespacePolicy(replicas=2)}
    joining = ClusterConfig(version=4, members=members("joining"), namespaces=policy)
    active = ClusterConfig(version=5, members=members("active"), namespaces=policy)
    plane = make_plane([ME, OTHER, THIRD], replicas=2)
    current = [joining]
    handoff = HandOff(
        plane.store,
        ME,
        plane,
        config=lambda: current[0],
        propose=_refuse,
        alive=lambda node: node == ME,  # no live source: nothing is pulled over the network
        dead=lambda node: False,
        config_version_of=lambda node: 5,
        rate=1 << 30,
    )
    plane.install(joining)
    await handoff._pull_gained(joining)
    handoff.held = joining
    handoff._held_ring = plane.ring
    current[0] = active
    plane.install(active)
    built: list[int] = []

    class CountedRing(Ring):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr("meshcache.node.data.handoff.Ring", CountedRing)
    with longest_step(cpu=True) as probe:  # CPU time: a busy CI preempts
        await handoff._pull_gained(active)
    assert built == []
    assert probe.steps >= 2, probe.describe()
    assert probe.longest <= 0.05, probe.describe()
