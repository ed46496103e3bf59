"""Loopback ports and readiness polling."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from .process import ManagedProcess


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
