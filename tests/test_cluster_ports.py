"""The local test cluster takes the first block of six free ports (and cluster-bus ports)."""

from __future__ import annotations

import socket

from tests.cluster import free_ports


def _listen(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def test_a_taken_port_or_bus_port_moves_the_block_on() -> None:
    first = free_ports(7400)
    taken = _listen(first[0])  # a node a killed run left behind
    try:
        second = free_ports(first[0])
        assert first[0] not in second and second[0] > first[0] and len(second) == 6
        bus = _listen(second[2] + 10000)  # its cluster-bus port
        try:
            third = free_ports(first[0])
            assert second[2] not in third and third[0] > second[0]
        finally:
            bus.close()
    finally:
        taken.close()
