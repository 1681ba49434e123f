"""The fault model both simulators share."""

from __future__ import annotations

import math

import pytest

from meshcache.testing.faults import LinkFaults, SimulationError
from meshcache.testing.simnet import STEADY_LINK, SimNetwork


def test_defaults_model_a_quiet_lan() -> None:
    assert LinkFaults() == LinkFaults(delay=0.0005, jitter=0.002, loss=0.0, duplicate=0.0)


def test_a_network_given_no_link_uses_the_steady_one() -> None:
    assert SimNetwork(1).default_link == STEADY_LINK == LinkFaults(delay=0.001, jitter=0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss": -0.1},
        {"loss": 1.5},
        {"duplicate": 2.0},
        {"loss": math.nan},
        {"delay": -0.001},
        {"jitter": -1.0},
        {"delay": math.inf},
        {"jitter": math.nan},
    ],
)
def test_impossible_faults_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LinkFaults(**kwargs)


def test_faults_are_frozen_values() -> None:
    link = LinkFaults(loss=0.1)
    with pytest.raises(AttributeError):
        link.loss = 0.2  # type: ignore[misc]
    assert {link, LinkFaults(loss=0.1)} == {link}


def test_simulation_error_is_an_exception() -> None:
    assert issubclass(SimulationError, Exception)
