"""The commands the README and the host contract name are installed by `make setup` (pyproject's
[project.scripts], installed with `pip install -e .`) and run from the virtual environment's bin/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("command", "expected"), [("host-agent", "ready-check"), ("kb", "KB_HOME"), ("fleet", "simulate")]
)
def test_console_script_runs(command: str, expected: str) -> None:
    script = BIN / command
    assert script.is_file(), f"{script} is missing: run make setup"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
