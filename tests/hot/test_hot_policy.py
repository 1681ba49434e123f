"""The hot-key policy: a nested value of the namespace policy, validated, round-tripped."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshcache.errors import ConfigError
from meshcache.settings import load_settings
from meshcache.store.hotpolicy import HotKeyPolicy
from meshcache.store.policy import NamespacePolicy


def test_it_round_trips_through_the_namespace_mapping() -> None:
    policy = NamespacePolicy(hot=HotKeyPolicy(copies=3, lease=2.5, share=0.02))
    mapping = policy.to_mapping()
    assert mapping["hot"] == {
        "enabled": True,
        "share": 0.02,
        "rate": 100.0,
        "copies": 3,
        "lease": 2.5,
        "area": 0.125,
    }
    assert NamespacePolicy.from_mapping(mapping) == policy
    assert "hot" not in NamespacePolicy().to_mapping()
    every = NamespacePolicy.from_mapping({"hot": {"lease": 1}})
    assert every.hot == HotKeyPolicy(lease=1.0) and every.hot.copies is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"share": 0}, "hot.share must be a number in (0, 1]"),
        ({"share": 1.5}, "hot.share"),
        ({"area": 0.0}, "hot.area"),
        ({"rate": -1}, "hot.rate must be a finite number >= 0"),
        ({"rate": float("inf")}, "hot.rate"),
        ({"lease": 0.001}, "hot.lease must be seconds between 0.05 and 3600"),
        ({"copies": 0}, "hot.copies must be an integer >= 1"),
        ({"copies": True}, "hot.copies"),
        ({"enabled": "yes"}, "hot.enabled must be true or false"),
        ({"sharee": 0.1}, "unknown hot-key policy field(s): sharee"),
    ],
)
def test_bad_values_are_refused_with_a_clear_error(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        NamespacePolicy.from_mapping({"hot": fields})


def test_hot_must_be_a_table() -> None:
    with pytest.raises(ConfigError, match="hot must be a table"):
        NamespacePolicy.from_mapping({"hot": 3})
    with pytest.raises(ConfigError, match="hot must be a hot-key policy"):
        NamespacePolicy(hot={"share": 0.1}).validate()  # type: ignore[arg-type]


def test_a_node_config_file_takes_a_hot_table(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        '[namespaces.sessions]\nmax_bytes = "64MiB"\n'
        "[namespaces.sessions.hot]\ncopies = 2\nlease = 1.5\nshare = 0.02\n"
    )
    settings = load_settings(config_file=config, environ={})
    assert settings.namespaces["sessions"].hot == HotKeyPolicy(copies=2, lease=1.5, share=0.02)
    config.write_text("[namespaces.sessions.hot]\nlease = 0\n")
    with pytest.raises(ConfigError, match=r"hot\.lease must be seconds between 0\.05 and 3600"):
        load_settings(config_file=config, environ={})
