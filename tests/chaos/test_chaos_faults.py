"""The chaos fault model and schedules as data (no root): reachability answers, the nftables
script they render to, and schedules that replay from their seed."""

from __future__ import annotations

import json

import pytest

from meshcache.testing.chaos import faults
from meshcache.testing.chaos.checkers import Check
from meshcache.testing.chaos.cli import build_parser, table
from meshcache.testing.chaos.netns import NFT_TABLE, missing_privileges
from meshcache.testing.chaos.scenarios import (
    EXTRA_KINDS,
    FAULT_KINDS,
    CycleReport,
    Schedule,
    faults_from_spec,
    make_schedule,
    summarize,
)

NODES = ["n0", "n1", "n2", "n3", "n4"]
ADDRESSES = {n: f"10.77.0.{11 + i}" for i, n in enumerate(NODES)} | {"c0": "10.77.0.101"}


def test_a_partition_cuts_every_pair_across_sides_and_nothing_within() -> None:
    f = faults.partition(["n0", "c0"], ["n1", "n2"])
    assert f.blocked("n0", "n1") and f.blocked("n2", "c0")
    assert f.connected("n0", "c0") and f.connected("n1", "n2")
    assert not f.one_way
    assert f.majority("n1", ["n0", "n1", "n2"]) and not f.majority("n0", ["n0", "n1", "n2"])


def test_a_one_way_cut_blocks_one_direction() -> None:
    f = faults.one_way(["n0"], ["n1", "n2"])
    assert f.blocked("n0", "n1") and not f.blocked("n1", "n0")
    assert not f.connected("n0", "n1") and f.one_way


def test_a_bridge_makes_overlapping_majorities() -> None:
    f = faults.bridge(["n0", "n1"], ["n2"], ["n3", "n4"])
    voters = NODES
    assert f.blocked("n0", "n3") and f.connected("n2", "n0") and f.connected("n2", "n4")
    assert f.majority("n0", voters) and f.majority("n4", voters) and f.majority("n2", voters)


def test_isolation_and_loss() -> None:
    f = faults.isolate("n1", NODES)
    assert all(f.blocked("n1", n) for n in NODES if n != "n1")
    assert not f.majority("n1", NODES)
    loss = faults.lossy(NODES, 0.2)
    assert loss.loss("n0", "n1") == pytest.approx(0.2) and loss.connected("n0", "n1")
    both = faults.combine(loss, faults.lossy(NODES, 0.5))
    assert both.loss("n0", "n1") == pytest.approx(0.6)
    with pytest.raises(ValueError):
        faults.lossy(NODES, 0.0)


def test_the_nft_script_replaces_the_table_in_one_transaction() -> None:
    script = faults.nft_script(faults.partition(["n0", "c0"], ["n1"]), ADDRESSES)
    lines = script.splitlines()
    assert lines[:2] == [f"table bridge {NFT_TABLE}", f"delete table bridge {NFT_TABLE}"]
    assert "type filter hook forward priority 0; policy accept;" in script
    assert "ip saddr { 10.77.0.101, 10.77.0.11 } ip daddr { 10.77.0.12 } drop" in script
    assert "ip saddr { 10.77.0.12 } ip daddr { 10.77.0.101, 10.77.0.11 } drop" in script
    lossy = faults.nft_script(faults.lossy(["n0", "n1"], 0.2), ADDRESSES)
    assert "numgen random mod 10000 < 2000 drop" in lossy
    healthy = faults.nft_script(faults.healthy(), ADDRESSES)
    assert "drop" not in healthy


def test_a_tcp_only_partition_drops_tcp_and_lets_gossip_through() -> None:
    f = faults_from_spec({"shape": "partition", "sides": [["n0", "c0"], ["n1"]], "proto": "tcp"})
    assert f.blocked("n0", "n1") and f.connected("n0", "c0") and not f.one_way
    script = faults.nft_script(f, ADDRESSES)
    assert "ip saddr { 10.77.0.101, 10.77.0.11 } ip daddr { 10.77.0.12 } meta l4proto tcp drop" in (
        script
    )
    assert script.count("drop") == 2 and "-x tcp->" in f.describe()
    with pytest.raises(ValueError):
        faults.partition(["n0"], ["n1"], proto="udp")


@pytest.mark.parametrize("kind", (*FAULT_KINDS, *EXTRA_KINDS))
def test_a_schedule_is_drawn_from_its_seed_and_survives_json(kind: str) -> None:
    a = make_schedule(kind, "7:3", NODES[:3], ["c0", "c1"])
    b = make_schedule(kind, "7:3", NODES[:3], ["c0", "c1"])
    assert a == b
    again = Schedule.from_mapping(json.loads(json.dumps(a.to_mapping())))
    assert again.to_mapping() == a.to_mapping()
    for step in a.steps:
        if step.action == "faults":
            faults_from_spec(step.args)  # every spec renders
    assert all(0 <= s.at <= a.duration for s in a.steps)


def test_loss_and_skew_can_be_fixed_leaving_the_rest_of_the_draw() -> None:
    seen_signs = set()
    for cycle in range(40):
        seed = f"3:{cycle}"
        drawn = make_schedule("loss", seed, NODES[:3], ["c0", "c1"])
        fixed = make_schedule("loss", seed, NODES[:3], ["c0", "c1"], loss=0.2)
        assert [s.args["p"] for s in fixed.steps] == [0.2]
        assert fixed.duration == drawn.duration
        drawn = make_schedule("skew", seed, NODES[:3], ["c0", "c1"])
        fixed = make_schedule("skew", seed, NODES[:3], ["c0", "c1"], skew=2.0)
        (d,), (f,) = drawn.steps, fixed.steps
        assert f.args["node"] == d.args["node"]
        assert abs(f.args["seconds"]) == 2.0
        assert (f.args["seconds"] > 0) == (d.args["seconds"] > 0)
        seen_signs.add(f.args["seconds"])
        # Other kinds ignore them.
        other = make_schedule("partition", seed, NODES[:3], ["c0", "c1"], loss=0.2, skew=2.0)
        assert other == make_schedule("partition", seed, NODES[:3], ["c0", "c1"])
    assert seen_signs == {-2.0, 2.0}


@pytest.mark.parametrize("kind", ["partition", "one-way", "bridge", "isolate", "loss", "kill"])
def test_the_database_joins_the_majority_side_and_the_draw_stays(kind: str) -> None:
    plain = make_schedule(kind, "5:1", NODES[:3], ["c0", "c1"])
    with_db = make_schedule(kind, "5:1", NODES[:3], ["c0", "c1"], db=True)
    assert (plain.sides, plain.plain, plain.duration) == (
        with_db.sides, with_db.plain, with_db.duration
    )  # fmt: skip
    assert not plain.has_db and with_db.has_db == (kind != "kill")
    for step in with_db.steps:
        if step.action != "faults":
            continue
        net = faults_from_spec(step.args)
        # Cut off from the database exactly the endpoints cut off from client c1's side.
        for endpoint in [*NODES[:3], "c0"]:
            assert net.connected(endpoint, "db") == net.connected(endpoint, "c1"), (kind, endpoint)


def test_the_soak_command_refuses_a_bad_loss_or_skew() -> None:
    parser = build_parser()
    args = parser.parse_args(["soak", "--loss", "0.2", "--skew", "2"])
    assert (args.loss, args.skew) == (0.2, 2.0)
    for bad in (["--loss", "20"], ["--loss", "0"], ["--skew", "-2"], ["--skew", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["soak", *bad])


def test_without_root_the_harness_says_why() -> None:
    problem = missing_privileges()
    assert problem is None or "root" in problem or "needs" in problem


def _report(cycle: int, converged: float | None, agreed: float | None, load: float) -> CycleReport:
    writes = Check("writes", counts={"quorum_acked": 10, "quorum_ok": 10, "one_lost": cycle})
    membership = Check("membership", counts={"seconds": agreed, "bound": 10.0})
    if agreed is None:
        membership.fail("ring and membership not agreed within 10s of the heal")
    schedule = make_schedule("partition", f"1:{cycle}", NODES[:3], ["c0", "c1"])
    checks = [writes, Check("resources", counts={"hints_drained_s": 1.0}), membership]
    return CycleReport(cycle, schedule, "p", 0.0, 1.0, converged, {}, checks, "h", load)


def test_the_soak_summary_gives_median_and_max_times_and_the_load() -> None:
    reports = [_report(0, 2.0, 1.0, 3.5), _report(1, 6.0, 2.0, 7.25), _report(2, None, None, 5.0)]
    k = summarize(reports)["kinds"]["partition"]
    assert (k["cycles"], k["lost"]["one"], k["ops"]) == (3, 3, 30)
    assert (k["converge_median_s"], k["converge_max_s"], k["not_converged"]) == (4.0, 6.0, 1)
    assert (k["agree_median_s"], k["agree_max_s"], k["not_agreed"]) == (1.5, 2.0, 1)
    assert (k["load_min"], k["load_max"]) == (3.5, 7.25)
    assert k["failed_checks"] == {"membership": 1}
    row = table(summarize(reports)).splitlines()[-1]
    assert "| 4.0 / 6.0 (1 never) | 1.5 / 2.0 (1 never) |" in row
    assert "| 3.5-7.2 | membership 1 |" in row


def test_the_soak_summary_totals_the_conditional_and_hot_figures() -> None:
    reports = [_report(0, 2.0, 1.0, 3.5), _report(1, 3.0, 1.0, 4.0)]
    reports[0].checks.append(Check("conditional", counts={"incr_regressions": 2}))
    reports[1].checks.append(Check("conditional", counts={"nx_over_value": 1}))
    reports[0].checks.append(
        Check("hot", counts={"reads": 10, "stale": 0, "max_staleness_ms": 900})
    )
    reports[1].checks.append(
        Check("hot", counts={"reads": 5, "stale": 1, "max_staleness_ms": 2500})
    )
    k = summarize(reports)["kinds"]["partition"]
    assert k["conditional"]["incr_regressions"] == 2 and k["conditional"]["nx_over_value"] == 1
    assert k["hot"] == {"reads": 15, "stale": 1, "max_staleness_ms": 2500}
    # A cycle without those checkers (an older history, no hot keys) adds nothing.
    assert summarize([_report(2, 2.0, 1.0, 3.0)])["kinds"]["partition"]["hot"] == {}
