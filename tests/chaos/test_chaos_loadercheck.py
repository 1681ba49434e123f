"""The loader checker (``loadercheck.check_loader``) on hand-made histories: staleness bounded
by the TTL (and by the NOTIFY path while healthy), one load per miss wave, no wedged key, a
client's SET not replaced by a load; and ``version_of``."""

from __future__ import annotations

from typing import Any

from meshcache.testing.chaos.history import History, build
from meshcache.testing.chaos.loadercheck import LoaderBounds, check_loader
from meshcache.testing.chaos.pgsource import version_of

NS = "chaos-load"
K = "c1:l0"
BOUNDS = LoaderBounds(ttl=3.0, delta=1.0, notify=2.0, settle=10.0)


class Ops:
    """Records of a synthetic history: each op is an invoke and a completion."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.n = 0

    def op(self, p: str, f: str, t0: float, t1: float, kind: str = "ok", **extra: Any) -> None:
        self.n += 1
        invoke = {"type": "invoke", "p": p, "n": self.n, "f": f, "ns": NS, "key": K, "t": t0}
        done = {"type": kind, "p": p, "n": self.n, "f": f, "t": t1}
        for name in ("value", "node"):
            if name in extra and f != "get":
                invoke[name] = extra.pop(name)
        if "node" in extra:
            invoke["node"] = extra.pop("node")
        done.update(extra)
        self.records += [invoke, done]

    def update(self, t: float, version: int) -> None:
        self.op("db-writer", "dbwrite", t, t + 0.01, result=version)

    def read(self, t: float, value: str | None, p: str = "r", **extra: Any) -> None:
        self.op(p, "get", t, t + 0.01, value=value, **extra)

    def history(self) -> History:
        return build(self.records)


def check(ops: Ops, loads: list[float], **options: Any) -> Any:
    kwargs: dict[str, Any] = {"namespace": NS, "bounds": BOUNDS, **options}
    return check_loader(ops.history(), [(K, t) for t in loads], {K: 0}, **kwargs)


def test_version_of_reads_the_version_a_value_names() -> None:
    assert version_of("c1:l0", "c1:l0:17") == 17
    assert version_of("c1:l0", "c1:l0:s:c0-loader:3") is None
    assert version_of("c1:l0", "c1:l1:2") is None
    assert version_of("c1:l0", None) is None


def test_fresh_reads_and_one_load_per_wave_pass() -> None:
    ops = Ops()
    ops.read(1.0, f"{K}:0")
    ops.update(2.0, 1)
    ops.read(2.5, f"{K}:0")  # within the notify bound
    ops.read(3.0, f"{K}:1")
    result = check(ops, [0.9, 2.1, 5.2])  # first miss, the NOTIFY's reload, an expiry
    assert result.ok, result.findings
    assert result.counts["loads"] == 3 and result.counts["waves"] == 3
    assert result.counts["stale_reads_healthy"] == 1


def test_a_read_older_than_the_ttl_allows_fails_even_under_a_fault() -> None:
    ops = Ops()
    ops.update(1.0, 1)
    ops.read(6.0, f"{K}:0")  # 5 s after version 1: beyond ttl 3 + delta 1
    result = check(ops, [], faulty=[(0.0, 100.0)])
    assert not result.ok
    assert result.counts["stale_beyond_ttl"] == 1


def test_staleness_past_the_notify_bound_fails_only_while_healthy() -> None:
    ops = Ops()
    ops.update(1.0, 1)
    ops.read(3.5, f"{K}:0")  # 2.5 s stale: past notify (2 s), within ttl + delta (4 s)
    assert check(ops, []).counts["stale_beyond_notify"] == 1
    under_fault = check(ops, [], faulty=[(0.5, 10.0)])
    assert under_fault.ok, under_fault.findings
    assert under_fault.counts["stale_reads_fault"] == 1


def test_impossible_reads_fail() -> None:
    ops = Ops()
    ops.read(1.0, f"{K}:1")  # no UPDATE yet
    ops.read(1.5, None)  # the key has a row
    ops.read(2.0, f"{K}:s:nobody:1")
    result = check(ops, [])
    assert result.counts["impossible"] == 3 and not result.ok


def test_a_nil_fails_while_healthy_and_is_counted_under_a_fault() -> None:
    ops = Ops()
    ops.op("r", "get", 2.0, 2.9, value=None)
    ops.update(2.2, 1)  # its NOTIFY lands while the miss loads: the row is still there
    result = check(ops, [])
    assert not result.ok and result.counts["impossible"] == 1, result.findings
    ops = Ops()
    ops.read(2.0, None)  # no change announced: counted under a fault, a failure while healthy
    assert check(ops, [], faulty=[(1.0, 3.0)]).counts["nil_under_fault"] == 1
    assert check(ops, []).counts["impossible"] == 1


def test_a_finding_names_the_nodes_that_made_the_two_loads() -> None:
    ops = Ops()
    ops.read(1.0, f"{K}:0")
    result = check_loader(
        ops.history(), [(K, 0.9, "10.77.0.11"), (K, 1.2, "10.77.0.12")], {K: 0},
        namespace=NS, bounds=BOUNDS,
    )  # fmt: skip
    assert not result.ok and result.counts["extra_loads"] == 1
    assert "+0.90s by 10.77.0.11 and again at +1.20s by 10.77.0.12" in result.findings[0]


def test_two_loads_in_one_wave_fail_while_healthy_and_are_counted_under_a_fault() -> None:
    ops = Ops()
    ops.read(1.0, f"{K}:0")
    healthy = check(ops, [0.9, 1.2])
    assert not healthy.ok and healthy.counts["extra_loads"] == 1
    split = check(ops, [0.9, 1.2], faulty=[(0.5, 2.0)])
    assert split.ok and split.counts["extra_loads_under_fault"] == 1
    ops.update(1.1, 1)  # a change announced after the first load: the second is a reload
    assert check(ops, [0.9, 1.2]).counts["extra_loads"] == 0


def test_a_load_replacing_a_clients_set_fails() -> None:
    ops = Ops()
    ops.op("w", "set", 1.0, 1.01, value=f"{K}:s:w:1")
    ops.read(1.5, f"{K}:s:w:1")
    ops.read(2.0, f"{K}:0")  # the SET lives until 4.0: a load replaced it
    result = check(ops, [])
    assert not result.ok and result.counts["set_overwritten"] == 1
    ops.update(0.5, 1)  # ... unless a change was announced after the SET landed
    ops.records = [r for r in ops.records if r.get("value") != f"{K}:0"]
    ops.read(2.0, f"{K}:1")
    assert check(ops, []).counts["set_overwritten"] == 0


def test_a_set_served_past_its_ttl_fails() -> None:
    ops = Ops()
    ops.op("w", "set", 1.0, 1.01, value=f"{K}:s:w:1")
    ops.read(6.0, f"{K}:s:w:1")
    result = check(ops, [])
    assert result.counts["set_past_ttl"] == 1 and not result.ok


def test_every_key_must_read_its_last_version_through_every_node_after_the_heal() -> None:
    ops = Ops()
    ops.update(18.5, 1)
    for node in ("n0", "n1"):
        ops.read(20.0, f"{K}:0", p="final", node=node)
    ops.read(21.0, f"{K}:1", p="final", node="n0")
    ops.read(21.0, f"{K}:0", p="final", node="n1")  # n1 wedged at version 0
    kwargs: dict[str, Any] = {"final_from": 19.0, "final_process": "final"}
    result = check_loader(
        ops.history(), [], {K: 1}, namespace=NS, bounds=BOUNDS, faulty=[(0.0, 30.0)], **kwargs
    )
    assert result.counts["wedged"] == 1 and "through n1" in result.findings[-1], result.findings
    ops.read(22.0, f"{K}:1", p="final", node="n1")
    result = check_loader(
        ops.history(), [], {K: 1}, namespace=NS, bounds=BOUNDS, faulty=[(0.0, 30.0)], **kwargs
    )
    assert result.ok, result.findings
    assert result.counts["settled_max_ms"] == 3010
