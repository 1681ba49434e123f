"""Smoke tests of tools/gossip_sim.py on tiny clusters, so the figures' tool does not rot."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "gossip_sim.py"


@pytest.fixture(scope="module")
def gossip_sim() -> ModuleType:
    pytest.importorskip("meshcache.gossip.swim")
    spec = importlib.util.spec_from_file_location("gossip_sim", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gossip_sim"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_dissemination_reaches_everyone(gossip_sim: ModuleType, sim_seed: int) -> None:
    result = gossip_sim.dissemination(12, 0.0, sim_seed, trials=2)
    for reach in result.trials:
        assert reach[0.9999] is not None and reach[0.9999] < 5.0, f"seed={sim_seed}"


def test_no_false_positive_on_a_clean_network(gossip_sim: ModuleType, sim_seed: int) -> None:
    config = gossip_sim.GossipConfig.lan()
    result = gossip_sim.false_positives(
        "clean", config, n=8, duration=60.0, loss=0.0, seed=sim_seed
    )
    assert result.dead_events == 0 and result.suspect_events == 0, f"seed={sim_seed}"


def test_quiet_load_is_ping_and_ack(gossip_sim: ModuleType, sim_seed: int) -> None:
    result = gossip_sim.load(8, sim_seed, window=10.0)
    assert result.quiet.packets == pytest.approx(2.0, abs=0.2), f"seed={sim_seed}"
    assert result.busy.packets > result.quiet.packets


def test_cli_prints_a_markdown_table(
    gossip_sim: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gossip_sim.main(["load", "--sizes", "6"]) == 0
    out = capsys.readouterr().out
    assert "python tools/gossip_sim.py load --sizes 6" in out
    assert "| 6 | 2.00 |" in out
