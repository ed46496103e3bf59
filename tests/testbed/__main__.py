"""`python -m tests.testbed up|tools`.

`up` starts the whole bed, prints `export` lines for a shell on stdout, and
keeps it running until interrupted (Ctrl-C or SIGTERM), then removes every
trace. `tools` only builds or unpacks the binaries, for CI's install step.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from types import FrameType

from . import tools
from .bed import TestBed
from .prometheus import promtool


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def up() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    bed = TestBed()
    try:
        bed.start()
        for key, value in bed.env().items():
            print(f"export {key}={shlex.quote(value)}")
        print(f"# test bed ready in {bed.ready_seconds:.1f}s; Ctrl-C to stop", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C or SIGTERM must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bed.stop()
        print("# test bed stopped", file=sys.stderr)
    return 0


def install_tools() -> int:
    for name, path in [
        ("kubebed", tools.kubebed()),
        ("kubectl", tools.kubectl()),
        ("helm", tools.helm()),
        ("promtool", promtool()),
        ("trivy", tools.trivy()),
        ("checkov", tools.checkov()),
        ("prometheus-operator CRDs", tools.prometheus_operator_crds()[0].parent),
    ]:
        print(f"{name}: {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testbed")
    parser.add_argument("command", choices=["up", "tools"])
    args = parser.parse_args()
    return up() if args.command == "up" else install_tools()


if __name__ == "__main__":
    sys.exit(main())
