from __future__ import annotations

import subprocess
import sys

import pytest

from contactsync import __version__
from contactsync.cli import main


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"contactsync {__version__}"


def test_no_command_is_a_usage_error() -> None:
    assert main([]) == 2
    assert main(["sync"]) == 2  # -f is required
    assert main(["keys", "rotate"]) == 2  # --keyring is required


def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "contactsync.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.startswith("contactsync ")
