"""`kb` read commands cold (a fresh process: PostgreSQL client, model load) vs warm (a running `kb serve`).

    KB_HOME=/tmp/kb-bench .venv/bin/kb ingest samples/emberfall --world emberfall   # once
    KB_HOME=/tmp/kb-bench .venv/bin/python bench/bench_cli_warm.py [--runs 5] [--json]

Each command runs `--runs` times as a new `kb` process, the way a user or a script calls it: cold with
KB_NO_SERVER=1 (the embedded PostgreSQL already running, so only the command's own cost is counted), then
warm against a `kb serve` this script starts and stops. Reported: mean and spread of the wall time, and
warm / cold. The cost of starting PostgreSQL itself (a first command after `kb stop`) is measured apart.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

COMMANDS = {
    "search": ["search", "how is the fire tithe collected", "--world", "emberfall", "--k", "3", "--json"],
    "context": ["context", "the heroes bring the fire tithe to court", "--world", "emberfall", "--json"],
    "history": ["history", "Queen Ysolde Varr", "--world", "emberfall", "--json"],
}


def _kb(argv: Sequence[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cli.kb", *argv], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def _series(argv: Sequence[str], env: dict[str, str], runs: int) -> list[float]:
    return [_kb(argv, env) for _ in range(runs)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs of each command in each mode")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    base = {**os.environ}
    cold_env = {**base, "KB_NO_SERVER": "1"}

    subprocess.run([sys.executable, "-m", "cli.kb", "stop"], env=base, check=True, capture_output=True)
    first = _kb(COMMANDS["search"], cold_env)  # starts the embedded PostgreSQL too
    results: dict[str, dict[str, float]] = {}
    cold = {name: _series(command, cold_env, args.runs) for name, command in COMMANDS.items()}

    server = subprocess.Popen(
        [sys.executable, "-m", "cli.kb", "serve", "--port", "0"],
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        if not server.stdout.readline().startswith("kb serve: "):
            raise SystemExit("kb serve did not start")
        _kb(COMMANDS["search"], base)  # the server's first query loads its model
        warm = {name: _series(command, base, args.runs) for name, command in COMMANDS.items()}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=300)
    for name in COMMANDS:
        results[name] = {
            "cold_s": statistics.mean(cold[name]),
            "cold_sd": statistics.stdev(cold[name]) if args.runs > 1 else 0.0,
            "warm_s": statistics.mean(warm[name]),
            "warm_sd": statistics.stdev(warm[name]) if args.runs > 1 else 0.0,
        }
        results[name]["warm_over_cold"] = results[name]["warm_s"] / results[name]["cold_s"]
    report = {"runs": args.runs, "first_command_with_postgres_start_s": first, "commands": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"first command after kb stop (starts PostgreSQL): {first:.2f} s")
    print(f"{'command':<9} {'cold s':>12} {'warm s':>12} {'warm/cold':>10}")
    for name, r in results.items():
        print(
            f"{name:<9} {r['cold_s']:>6.2f} ±{r['cold_sd']:<4.2f} {r['warm_s']:>6.2f} ±{r['warm_sd']:<4.2f}"
            f" {r['warm_over_cold']:>9.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
