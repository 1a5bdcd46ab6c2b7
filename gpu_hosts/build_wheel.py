"""Builds the host agent wheel (host_agent + the generated `messages` protobuf package) into dist/.

    .venv/bin/python gpu_hosts/build_wheel.py [--out DIR]

Then upload it where the image pipelines read it (images/template.yaml's HostAgentArtifactsBucket and
HostAgentWheelKey) and run them (images/README.md):
    aws s3 cp dist/gpu_host_agent-0.1.0-py3-none-any.whl s3://BUCKET/gpu-host/
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def build(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    with tempfile.TemporaryDirectory(prefix="host-agent-wheel-") as tmp:
        stage = Path(tmp)
        shutil.copy2(HERE / "pyproject.toml", stage / "pyproject.toml")
        shutil.copytree(HERE / "host_agent", stage / "host_agent", ignore=ignore)
        shutil.copytree(REPO / "layers" / "messages" / "messages", stage / "messages", ignore=ignore)
        before = set(out.glob("*.whl"))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(out),
                str(stage),
            ],
            check=True,
        )
    built = sorted(set(out.glob("gpu_host_agent-*.whl")) - before) or sorted(out.glob("gpu_host_agent-*.whl"))
    return built[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    print(build(parser.parse_args().out.resolve()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
