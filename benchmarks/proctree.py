"""Memory and threads of a process and all its descendants, read from /proc."""

from __future__ import annotations

from pathlib import Path


def tree_status(pid: int) -> tuple[int, int]:
    """(VmRSS bytes, threads) of `pid` and all its descendants."""
    rss, threads, stack = 0, 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue  # it ended meanwhile
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                threads += int(line.split()[1])
        stack.extend(int(child) for child in children)
    return rss, threads
