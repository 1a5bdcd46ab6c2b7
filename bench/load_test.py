"""The knowledge API's load test: locust headless (bench/locustfile.py), a fixed user count and duration,
several runs, then latency P50/P95/P99 per route and where the handler's time went.

    .venv/bin/python bench/load_test.py [--users 4] [--duration 60] [--runs 3] [--markdown] [--json OUT]
    .venv/bin/python bench/load_test.py --stack-name ai-game-knowledge-dev     # a deployed stack
    .venv/bin/python bench/load_test.py --host https://<id>.execute-api.<region>.amazonaws.com/v1

Locally (no --host/--stack-name) it uses the local runtime of $KB_HOME (default .local/): it ingests the
sample worlds when `kb status` lacks one, starts `kb serve` on a free port, runs locust against it, and
stops what it started (`kb serve`, and the embedded PostgreSQL when it was not running before). Against a
stack, requests are SigV4-signed with your AWS credentials (the stack needs samples/ ingested); locally any
credentials do, as `kb serve` verifies none.

Per route and run it reads locust's stats CSV (requests, failures, requests/s, P50/P95/P99: locust's own
percentiles, rounded as locust rounds them) and the `Server-Timing` of every answer (query embedding, token
counting, SQL, handler: `knowledge.queries.timing`); the table is the mean over the runs. `client` is what the caller
saw, `handler` the function's own time; the difference is the transport (locally the HTTP server and
moto's Lambda invoke, on AWS API Gateway and Lambda).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
import load_plan  # noqa: E402  (bench/ is not a package)

LOCUST = Path(sys.executable).with_name("locust")
KB = [sys.executable, "-m", "cli.kb"]
SERVE_START_TIMEOUT_S = 300
PERCENTILES = ("50%", "95%", "99%")


class LoadTestError(RuntimeError):
    """The load test could not run: kb serve did not start, locust failed, the samples did not ingest."""


@dataclass(frozen=True, slots=True)
class RouteResult:
    """One route in one run."""

    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    client_mean_ms: float | None  # from the timings of successful answers
    handler_mean_ms: float | None
    embed_mean_ms: float | None
    tokens_mean_ms: float | None
    sql_mean_ms: float | None
    handler_p95_ms: float | None


def read_stats_csv(path: Path) -> dict[str, dict[str, Any]]:
    """locust's `<prefix>_stats.csv`: one row per request name (and 'Aggregated'), numbers as floats."""
    rows: dict[str, dict[str, Any]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            parsed: dict[str, Any] = {"Type": row["Type"], "Name": row["Name"]}
            for key, value in row.items():
                if key in ("Type", "Name"):
                    continue
                try:
                    parsed[key] = float(value)
                except (TypeError, ValueError):
                    parsed[key] = None  # "N/A": no request of that name
            rows[row["Name"]] = parsed
    return rows


def read_timings(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _p95(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def route_results(stats: dict[str, dict[str, Any]], timings: list[dict[str, Any]]) -> list[RouteResult]:
    """Per route of the plan that was asked at least once, then 'Aggregated' (all routes together)."""
    results = []
    for name in [*load_plan.ROUTE_NAMES.values(), "Aggregated"]:
        row = stats.get(name)
        if row is None or not row.get("Request Count"):
            continue
        mine = [t for t in timings if name == "Aggregated" or t["name"] == name]
        results.append(
            RouteResult(
                name=name,
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"] or 0),
                rps=float(row["Requests/s"] or 0.0),
                p50_ms=float(row["50%"] or 0.0),
                p95_ms=float(row["95%"] or 0.0),
                p99_ms=float(row["99%"] or 0.0),
                client_mean_ms=_mean([t["client_ms"] for t in mine]),
                handler_mean_ms=_mean([t["handler"] for t in mine if "handler" in t]),
                embed_mean_ms=_mean([t["embed"] for t in mine if "embed" in t]),
                tokens_mean_ms=_mean([t["tokens"] for t in mine if "tokens" in t]),
                sql_mean_ms=_mean([t["sql"] for t in mine if "sql" in t]),
                handler_p95_ms=_p95([t["handler"] for t in mine if "handler" in t]),
            )
        )
    return results


def mean_over_runs(runs: list[list[RouteResult]]) -> list[RouteResult]:
    """Each route's numbers averaged over the runs it appears in (counts summed)."""
    names = [r.name for r in runs[0]] if runs else []
    names += [r.name for run in runs[1:] for r in run if r.name not in names]
    averaged = []
    for name in names:
        rows = [r for run in runs for r in run if r.name == name]

        def mean_of(field: str, rows: list[RouteResult] = rows) -> float | None:
            return _mean([v for r in rows if (v := getattr(r, field)) is not None])

        averaged.append(
            RouteResult(
                name=name,
                requests=sum(r.requests for r in rows),
                failures=sum(r.failures for r in rows),
                rps=mean_of("rps") or 0.0,
                p50_ms=mean_of("p50_ms") or 0.0,
                p95_ms=mean_of("p95_ms") or 0.0,
                p99_ms=mean_of("p99_ms") or 0.0,
                client_mean_ms=mean_of("client_mean_ms"),
                handler_mean_ms=mean_of("handler_mean_ms"),
                embed_mean_ms=mean_of("embed_mean_ms"),
                tokens_mean_ms=mean_of("tokens_mean_ms"),
                sql_mean_ms=mean_of("sql_mean_ms"),
                handler_p95_ms=mean_of("handler_p95_ms"),
            )
        )
    return averaged


def markdown_table(results: list[RouteResult]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    lines = [
        "| route | requests | failures | req/s | P50 ms | P95 ms | P99 ms | client mean ms"
        " | handler mean ms | embedding mean ms | token counting mean ms | SQL mean ms | handler P95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.requests} | {r.failures} | {r.rps:.1f} | {r.p50_ms:.0f} | {r.p95_ms:.0f}"
            f" | {r.p99_ms:.0f} | {ms(r.client_mean_ms)} | {ms(r.handler_mean_ms)} | {ms(r.embed_mean_ms)}"
            f" | {ms(r.tokens_mean_ms)} | {ms(r.sql_mean_ms)} | {ms(r.handler_p95_ms)} |"
        )
    return "\n".join(lines)


def run_locust(
    host: str,
    *,
    users: int,
    spawn_rate: float,
    duration_s: int,
    workdir: Path,
    env: dict[str, str],
    worlds: str | None = None,
) -> list[RouteResult]:
    """One headless locust run against `host` (the API's base URL, ending in /v1)."""
    prefix = workdir / "locust"
    timings_file = workdir / "timings.jsonl"
    command = [
        str(LOCUST),
        "-f",
        str(BENCH / "locustfile.py"),
        "--host",
        host,
        "--headless",
        "--only-summary",
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--run-time",
        f"{duration_s}s",
        "--stop-timeout",
        "10",
        "--csv",
        str(prefix),
        "--exit-code-on-error",
        "0",  # failures are reported in the table, not as an error of the tool
    ]
    run_env = {**env, "KB_TIMINGS_FILE": str(timings_file)}
    if worlds:
        run_env["KB_WORLDS"] = worlds
    done = subprocess.run(
        command, env=run_env, capture_output=True, text=True, timeout=duration_s + 120, check=False
    )
    stats_file = prefix.with_name(prefix.name + "_stats.csv")
    if done.returncode != 0 or not stats_file.exists():
        raise LoadTestError(f"locust exited {done.returncode}: {done.stderr[-2000:]}")
    return route_results(read_stats_csv(stats_file), read_timings(timings_file))


# ---------------------------------------------------------------- the local stack


def _kb(args: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KB, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def _postgres_running(home: Path) -> bool:
    return (home / "pg" / "postmaster.pid").exists()


def ensure_samples(env: dict[str, str], worlds: Sequence[load_plan.WorldPlan]) -> list[str]:
    """Ingest each plan world that `kb status` lacks from samples/; the worlds it ingested."""
    status = _kb(["status", "--json"], env, 300)
    if status.returncode != 0:
        raise LoadTestError(f"kb status failed: {status.stderr[-2000:]}")
    loaded = {row["world"] for row in json.loads(status.stdout) if row.get("documents")}
    ingested = []
    for world in worlds:
        if world.world_id in loaded:
            continue
        done = _kb(["ingest", str(REPO / "samples" / world.world_id), "--world", world.world_id], env, 3600)
        if done.returncode != 0:
            raise LoadTestError(f"kb ingest of samples/{world.world_id} failed: {done.stderr[-2000:]}")
        ingested.append(world.world_id)
    return ingested


def stop_postgres(home: Path) -> None:
    """Stop the embedded PostgreSQL of `home` (started by a kb command this script ran)."""
    from local_runtime.postgres import start_embedded_postgres

    start_embedded_postgres(home / "pg").stop()


@contextmanager
def kb_serve(env: dict[str, str], logs: Path) -> Iterator[str]:
    """`kb serve --port 0` until the block ends; yields its URL. SIGTERM stops it and what it started.

    Its output goes to files under `logs` (the handler logs every answer: a pipe nobody reads would fill
    and stall it)."""
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / "kb-serve.out", logs / "kb-serve.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        process = subprocess.Popen([*KB, "serve", "--port", "0"], cwd=REPO, env=env, stdout=out, stderr=err)
    try:
        yield _served_url(process, out_path, err_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _served_url(process: subprocess.Popen[bytes], out_path: Path, err_path: Path) -> str:
    deadline = time.monotonic() + SERVE_START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        for line in out_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("kb serve: http"):
                return line.split()[2]
        time.sleep(0.5)
    raise LoadTestError(
        f"kb serve did not start: {err_path.read_text(encoding='utf-8', errors='replace')[-2000:]}"
    )


# ---------------------------------------------------------------- entry point


def run(args: argparse.Namespace) -> dict[str, Any]:
    worlds = load_plan.selected_worlds(args.worlds)
    env = dict(os.environ)
    target = args.host
    if args.stack_name:
        from knowledge_client import resolve_api_url

        target = resolve_api_url(args.stack_name, region=args.region)
    runs: list[list[RouteResult]] = []
    with tempfile.TemporaryDirectory(prefix="kb-load-") as tmp:
        if target:
            for n in range(args.runs):
                runs.append(_one_run(target, args, Path(tmp) / f"run{n}", env))
        else:
            from local_runtime.paths import kb_home

            home = kb_home()
            env["KB_HOME"] = str(home)
            # kb serve verifies no signature, but the locustfile signs every request: any credentials do.
            env.setdefault("AWS_ACCESS_KEY_ID", "local")
            env.setdefault("AWS_SECRET_ACCESS_KEY", "local")
            env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
            was_running = _postgres_running(home)
            try:
                ensure_samples(env, worlds)
            finally:
                if not was_running and _postgres_running(home):
                    stop_postgres(home)  # so that kb serve starts it, and stops it when it stops
            with kb_serve(env, Path(tmp) / "logs") as url:
                target = url
                for n in range(args.runs):
                    runs.append(_one_run(url, args, Path(tmp) / f"run{n}", env))
    mean = mean_over_runs(runs)
    return {
        "host": target if (args.host or args.stack_name) else "kb serve (local runtime)",
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "duration_s": args.duration,
        "runs": args.runs,
        "worlds": [w.world_id for w in worlds],
        "load_average_1m": os.getloadavg()[0],
        "mean": [asdict(r) for r in mean],
        "per_run": [[asdict(r) for r in run] for run in runs],
        "table": markdown_table(mean),
    }


def _one_run(host: str, args: argparse.Namespace, workdir: Path, env: dict[str, str]) -> list[RouteResult]:
    workdir.mkdir(parents=True)
    return run_locust(
        host,
        users=args.users,
        spawn_rate=args.spawn_rate,
        duration_s=args.duration,
        workdir=workdir,
        env=env,
        worlds=args.worlds,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    target = p.add_mutually_exclusive_group()
    target.add_argument("--host", help="a deployed API's base URL (…/v1); default: kb serve, started here")
    target.add_argument(
        "--stack-name",
        help=f"a deployed stack, its KnowledgeApiUrl output (e.g. {load_plan.DEFAULT_STACK_NAME})",
    )
    p.add_argument("--region", help="the stack's region (with --stack-name; default: your AWS config)")
    p.add_argument("--users", type=int, default=4, help="concurrent locust users (default 4)")
    p.add_argument("--spawn-rate", type=float, default=4.0, help="users started per second (default 4)")
    p.add_argument("--duration", type=int, default=60, help="seconds each run lasts (default 60)")
    p.add_argument("--runs", type=int, default=3, help="runs to average (default 3)")
    p.add_argument("--worlds", help="comma-separated worlds of the plan (default: all)")
    p.add_argument("--json", type=Path, help="write the results (mean and every run) to this file")
    p.add_argument("--markdown", action="store_true", help="print only the Markdown table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.users < 1 or args.duration < 1 or args.runs < 1 or args.spawn_rate <= 0:
        parser().error("--users, --duration, --runs and --spawn-rate must be positive")
    try:
        results = run(args)
    except (LoadTestError, ValueError) as exc:
        print(f"load test: {exc}", file=sys.stderr)
        return 1
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        print(results["table"])
    else:
        print(
            f"{results['host']}: {args.users} users, {args.duration} s x {args.runs} runs,"
            f" 1-min load average {results['load_average_1m']:.2f}"
        )
        print(results["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
