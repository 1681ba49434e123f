"""The ``meshcache_resp_*`` metric family: what a node's RESP port (docs/resp.md) served.

Registered in the node's registry only when the node serves RESP. The ops a RESP command runs
are counted with the data port's in ``meshcache_requests`` and ``meshcache_errors``; this
family holds what only the RESP port knows: commands by their Redis name, bad input by kind,
and the port's connections and bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from meshcache.node.net.resp_port import RespPort

_CLOSED = "closed_"


class RespCollector(Collector):
    """Exposes one RESP port's figures under ``meshcache_resp_*``."""

    def __init__(self, port: RespPort) -> None:
        self._port = port

    def collect(self) -> Iterator[Any]:
        yield from resp_families(self._port)


def resp_families(port: RespPort) -> Iterator[Any]:
    """The RESP port's commands, refusals, connections and bytes, since the node started."""
    server, stats = port.server, port.stats
    commands = CounterMetricFamily(
        "meshcache_resp_commands",
        "RESP commands run, by Redis command name (lower case; a subcommand counts under its "
        "command). Unknown commands and wrong arities are in meshcache_resp_errors.",
        labels=["command"],
    )
    for name, calls in sorted(server.calls.items()):
        commands.add_metric([name], calls)
    yield commands
    errors = CounterMetricFamily(
        "meshcache_resp_errors",
        "RESP input refused, by kind: unknown_command, wrong_arity, syntax_error, not_integer, "
        "not_float, too_large, protocol_<kind> (framing lost: the connection is closed), "
        "too_many_connections, ...",
        labels=["kind"],
    )
    for kind, n in sorted(server.refused.items()):
        errors.add_metric([kind], n)
    yield errors
    yield GaugeMetricFamily(
        "meshcache_resp_connections", "RESP connections open now.", value=port.connection_count
    )
    yield CounterMetricFamily(
        "meshcache_resp_connections_opened",
        "RESP connections accepted.",
        value=stats["connections_opened"],
    )
    closed = CounterMetricFamily(
        "meshcache_resp_connections_closed",
        "RESP connections closed, by reason (client_closed, reset, idle_timeout, protocol_error, "
        "too_many_connections, quit, node_stopping, ...).",
        labels=["reason"],
    )
    for key, n in sorted(stats.items()):
        if key.startswith(_CLOSED):
            closed.add_metric([key[len(_CLOSED) :]], n)
    yield closed
    yield CounterMetricFamily(
        "meshcache_resp_received_bytes",
        "Bytes read from RESP clients.",
        value=stats["bytes_received"],
    )
    yield CounterMetricFamily(
        "meshcache_resp_sent_bytes", "Bytes written to RESP clients.", value=stats["bytes_sent"]
    )


__all__ = ["RespCollector", "resp_families"]
