"""Loopback ports and readiness polling."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

from .process import ManagedProcess

_handed_out: set[int] = set()
_PORT_FLOOR = 20000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that
    nothing else will take before its server binds it.

    Ports come from below the kernel's ephemeral range: the kernel picks the
    local port of every outgoing connection (this harness makes thousands) from
    that range, so a port chosen there can be taken between choosing and a
    server's bind, which failed CI once ("Port 51275 is already in use"). No
    port is handed out twice in one process, so two servers never race for it.
    """
    ceiling = _ephemeral_low()
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(_PORT_FLOOR, ceiling)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in [{_PORT_FLOOR}, {ceiling})")


def wait_until(
    what: str,
    probe: Callable[[], bool],
    *,
    timeout: float,
    process: ManagedProcess | None = None,
    interval: float = 0.1,
) -> None:
    """Poll `probe` until it returns True; fail fast if `process` dies meanwhile."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None:
            process.check_alive()
        try:
            if probe():
                return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = exc
        time.sleep(interval)
    detail = f" (last error: {last_error!r})" if last_error else ""
    tail = f"\n{process.name} log:\n{process.log_tail()}" if process else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s{detail}{tail}")
