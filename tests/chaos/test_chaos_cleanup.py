"""The chaos harness leaves nothing behind: not when its body raises, not when its process is
killed with SIGKILL (the reaper cleans up, the run's PostgreSQL included), and whatever a
crashed run left is swept by the next one (only runs whose owner is gone). Without the
privileges it needs it refuses, saying why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from meshcache.testing.chaos import netns
from meshcache.testing.chaos.cluster import ChaosCluster, wait_until
from meshcache.testing.chaos.faults import nft_script, partition
from meshcache.testing.postgres import server_binaries
from meshcache.testing.procs import running
from tests.chaos.helpers import require_chaos

HARNESS = textwrap.dedent(
    """
    import json, sys, time
    from meshcache.testing.chaos.cluster import ChaosCluster
    from meshcache.testing.chaos.faults import nft_script, partition
    from meshcache.testing.chaos.workload import ClientSpec

    cluster = ChaosCluster(1, 1, loader=LOADER).__enter__()
    worker = cluster.start_worker("c0", [ClientSpec("w", cluster.seeds, rate=5)])
    cluster.set_faults(partition(["n0"], ["c0"]))
    cluster.pause("n0")
    pids = [cluster.nodes[0].pid, worker.proc.pid, cluster._reaper.pid]
    if cluster.database is not None:
        pids.append(cluster.database.server.proc.pid)
    print(json.dumps({"rid": cluster.rid, "pids": pids}), flush=True)
    time.sleep(600)
    """
)


def _leftovers(rid: str) -> list[str]:
    found = [f"netns {n}" for n in netns.list_netns() if n.startswith(f"{netns.PREFIX}-{rid}-")]
    out = netns.run(["ip", "-o", "link", "show"]).stdout
    found += [f"link {line}" for line in out.splitlines() if f"{netns.LINK_PREFIX}{rid}" in line]
    if netns.temp_root(rid).exists():
        found.append(f"dir {netns.temp_root(rid)}")
    if (netns.LOCK_DIR / f"{rid}.lock").exists():
        found.append("lock file")
    return found


@pytest.mark.chaos
@pytest.mark.parametrize("loader", [False, True], ids=["nodes", "with-postgres"])
def test_a_killed_harness_leaves_nothing_behind(loader: bool) -> None:
    require_chaos()
    if loader and server_binaries() is None and os.environ.get("CI") != "true":
        pytest.skip("chaos: the PostgreSQL server binaries (initdb, postgres) are not installed")
    with subprocess.Popen(
        [sys.executable, "-c", HARNESS.replace("LOADER", str(loader))],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        try:
            started = json.loads(line)
        except ValueError:
            proc.kill()
            raise AssertionError(f"the harness did not start: {line}{proc.stdout.read()}") from None
        rid, pids = started["rid"], started["pids"]
        assert _leftovers(rid), "the run had nothing to clean up"
        assert all(running(pid) for pid in pids)
        os.kill(proc.pid, signal.SIGKILL)
    wait_until(lambda: not _leftovers(rid), 60.0, f"run {rid} to be removed by its reaper")
    wait_until(lambda: not any(running(p) for p in pids), 30.0, "every process of the run to end")


@pytest.mark.chaos
def test_the_sweeper_removes_what_dead_runs_left_and_spares_live_ones() -> None:
    require_chaos()
    dead, live = netns.new_run_id(), netns.new_run_id()
    network = netns.Network(dead)
    network.create()
    network.add_endpoint("n0", 11, 0)
    network.set_rules(
        nft_script(partition(["n0"], ["c0"]), {"n0": "10.77.0.11", "c0": "10.77.0.101"})
    )
    sleeper = subprocess.Popen(
        ["ip", "netns", "exec", netns.netns_name(dead, "n0"), "sleep", "600"]
    )
    netns.temp_root(dead).mkdir()
    (netns.temp_root(dead) / "node.log").write_text("left behind")
    netns.LOCK_DIR.mkdir(parents=True, exist_ok=True)
    (netns.LOCK_DIR / f"{dead}.lock").write_text("12345\n")  # nobody holds it
    lock = netns.RunLock(live)
    try:
        netns.Network(live).create()
        assert _leftovers(dead) and _leftovers(live)
        removed = netns.sweep_stale()
        assert not _leftovers(dead), removed
        assert sleeper.wait(10) == -signal.SIGKILL
        assert any(dead in line for line in removed)
        assert not any(live in line for line in removed)
        assert netns.netns_name(live, "hub") in netns.list_netns()
    finally:
        lock.release()
        netns.cleanup_run(live)
        netns.cleanup_run(dead)
    assert not _leftovers(live)


@pytest.mark.chaos
def test_runs_started_together_never_share_an_id(monkeypatch: pytest.MonkeyPatch) -> None:
    require_chaos()
    taken, left, free = (netns.new_run_id() for _ in range(3))
    lock = netns.RunLock(taken)  # a live run
    netns.temp_root(left).mkdir()  # what a dead run left, not swept yet
    try:
        draws = iter([taken, left, free])
        monkeypatch.setattr(netns, "new_run_id", lambda: next(draws))
        rid, mine = netns.claim_run()
        assert rid == free
        mine.release()
        # A sweeper holds a dead run's lock while it removes its leftovers: no run can claim
        # that id meanwhile, and a live run's lock is never taken.
        assert netns.reap(taken) is None
        with pytest.raises(netns.ChaosError, match="already locked"):
            netns.RunLock(taken)
        # A lock file removed (by a sweeper) between its creation and the flock is no lock.
        real_flock = netns.fcntl.flock

        def unlinked_first(fd: int, op: int) -> None:
            (netns.LOCK_DIR / f"{free}.lock").unlink()
            real_flock(fd, op)

        monkeypatch.setattr(netns.fcntl, "flock", unlinked_first)
        with pytest.raises(netns.ChaosError, match="already locked"):
            netns.RunLock(free)
    finally:
        monkeypatch.undo()
        lock.release()
        for rid in (taken, left, free):
            netns.reap(rid)
    assert not _leftovers(taken) and not _leftovers(left) and not _leftovers(free)


@pytest.mark.chaos
def test_the_harness_cleans_up_when_its_body_raises() -> None:
    require_chaos()
    with pytest.raises(RuntimeError, match="boom"), ChaosCluster(1, 1) as cluster:
        rid = cluster.rid
        cluster.set_faults(partition(["n0"], ["c0"]))
        raise RuntimeError("boom")
    assert not _leftovers(rid)


def test_without_privileges_it_refuses_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "_effective_caps", lambda: 0)
    problem = netns.missing_privileges()
    assert problem is not None and "root" in problem and "CAP_NET_ADMIN" in problem
    with pytest.raises(netns.ChaosUnavailable, match="needs root"), ChaosCluster(1, 0):
        pass
