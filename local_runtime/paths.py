"""Where local state lives: $KB_HOME (default .local/ in the repository), kept across commands."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


def kb_home() -> Path:
    home = Path(os.environ.get("KB_HOME") or REPO_ROOT / ".local").resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home
