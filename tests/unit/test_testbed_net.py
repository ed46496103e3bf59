"""The test bed's port allocator: ports outside the kernel's ephemeral range,
never the same one twice, and bindable when handed out."""

from __future__ import annotations

import socket

from tests.testbed import net


def test_ports_come_from_below_the_ephemeral_range_and_never_repeat() -> None:
    low = net._ephemeral_low()
    ports = [net.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(net._PORT_FLOOR <= p < low for p in ports)


def test_a_port_that_is_listened_on_is_never_handed_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", net.free_port()))
        busy.listen()
        taken = busy.getsockname()[1]
        net._handed_out.discard(taken)  # only the bind may keep it from coming back
        for _ in range(2000):
            assert net.free_port() != taken
