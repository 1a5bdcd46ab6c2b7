"""`fleet` CLI: decide from snapshots, simulate and bench the policies, and its errors (exit 2, one line)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from cli.fleet import main, plot_figure
from fleet_sim import FleetPolicy, SpotStorm, Trace, simulate, target_tracking_gpu70

EXAMPLE = Path(__file__).resolve().parents[2] / "events" / "fleet-snapshot.json"
POLICIES = {
    "controller",
    "target-tracking-gpu70",
    "target-tracking-requests",
    "sqs-backlog-per-instance",
    "clairvoyant",
}
METRIC_KEYS = {
    "gpu_hours",
    "cost_usd",
    "slo_violation_minutes",
    "p95_queue_wait_s",
    "scale_actions",
    "scale_ins_with_backlog",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def _snapshot(tmp_path: Path, **changes: Any) -> Path:
    """The example snapshot with top-level keys replaced (None removes one), written to a file."""
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _signals(**changes: Any) -> dict[str, Any]:
    signals: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))["signals"]
    return signals | changes


# --- decide ----------------------------------------------------------------------------------------------------


def test_decide_on_the_example_snapshot(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, "decide", "--snapshot", str(EXAMPLE), "--json")
    assert set(out) == {
        "tier",
        "current_desired",
        "action",
        "desired",
        "required_hosts",
        "capacity_hosts",
        "backlog",
        "backlog_per_ready_host",
        "demand_ratio",
        "panic",
        "capacity_at_max",
        "metrics_fresh",
        "host_throughput_rps",
        "replace_hosts",
        "launch_backoff",
        "reasons",
        "new_state",
    }
    assert set(out["new_state"]) == {
        "low_demand_since_s",
        "last_scale_out_s",
        "last_scale_in_s",
        "panic_until_s",
        "arrival_rps",
        "arrival_time_s",
        "arrival_trend",
        "arrival_history",
        "players_history",
        "required_history",
        "requests_per_player",
        "throughput",
        "launch_failure_time_s",
        "launch_backoff_s",
        "launch_backoff_until_s",
        "waiting_since_s",
        "last_waiting_s",
        "version",
    }
    # 16.5 req/s at the planned 7.36 req/s/host (8 x 0.92) plus the backlog's drain need 3 hosts; the P95
    # over the SLO asks one more than the 4 ready.
    assert (out["tier"], out["action"], out["current_desired"], out["desired"]) == ("gold", "scale_out", 4, 5)
    assert out["new_state"]["last_scale_out_s"] == 1795810500
    assert out["reasons"][-1].startswith("scale_out: 4 -> 5")

    assert main(["decide", "--snapshot", str(EXAMPLE)]) == 0
    text = capsys.readouterr().out
    assert "gold: scale_out 4 -> 5" in text
    assert "P95 latency 1.35 s > SLO 1 s" in text


def test_a_backlog_snapshot_scales_out_in_panic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 3,000 waiting on 4 hosts: 75 hosts to drain within the 10 s wait objective, > 3 x capacity.
    signals = _signals(visible=3000, oldest_age_s=45.0, gpu_util=0.97, latency_p95_s=2.6)
    out = _json(capsys, "decide", "--snapshot", str(_snapshot(tmp_path, signals=signals)), "--json")
    assert out["action"] == "scale_out"
    assert out["panic"] is True
    # Arrivals 16.5 at 7.36 planned req/s/host (2.38) + backlog 3,036 drained over the 300 s boot at
    # 8 req/s/host (1.26) -> 4 hosts; P95 over the SLO asks one more than the 4 ready: 5, at once (panic).
    assert out["desired"] == out["required_hosts"] == 5
    assert out["capacity_at_max"] is False
    assert any(r.startswith("panic (") for r in out["reasons"])


def test_decide_accepts_a_controller_audit_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = {
        "tier": "silver",
        "decided_at": "2026-11-27T20:15:00+00:00",
        "applied": "none",
        "dry_run": False,
        "error": None,
        "signals": {
            "visible": 0,
            "in_flight": 2,
            "oldest_age_s": 0.0,
            "arrival_rps": 1.1,
            "gpu_util": None,
            "kv_cache_usage": None,
            "latency_p95_s": None,
            "metrics_time_s": None,
            "in_service": 3,
            "pending": 0,
            "draining": 0,
            "desired": 3,
        },
        "action": "hold",
        "desired": 3,
        "reasons": ["recorded, ignored"],
    }
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    out = _json(capsys, "decide", "--snapshot", str(path), "--json")
    assert (out["tier"], out["action"], out["desired"]) == ("silver", "hold", 3)
    assert out["metrics_fresh"] is False
    assert any("metrics missing" in r for r in out["reasons"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got array"),
        ({"tier": "platinum"}, "unknown tier 'platinum'"),
        ({"signals": None}, "missing 'signals' object"),
        ({"now_s": None}, "missing 'now_s'"),
        ({"signals": _signals(visible="12")}, 'signals.visible must be an integer, got string "12"'),
        ({"signals": _signals(in_service=2.5)}, "signals.in_service must be an integer, got number 2.5"),
        ({"signals": _signals(gpu_util=True)}, "signals.gpu_util must be a number or null, got boolean"),
        ({"signals": _signals(pending=-1)}, "negative counts: pending"),
        ({"signals": _signals(gpu_utilization=0.5)}, "signals: unknown keys gpu_utilization"),
        ({"signals": {"visible": 1}}, "signals: missing in_flight"),
        ({"state": {"panic_until_s": "soon"}}, "state.panic_until_s must be a number or null"),
        ({"policy": {"min_hosts": 9, "max_hosts": 3}}, "max_hosts >= max(min_hosts, 1)"),
        ({"policy": {"name": "other"}}, "policy: unknown keys name"),
        ({"signal": {}}, "unknown keys signal"),
    ],
)
def test_decide_rejects_bad_snapshots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any, message: str
) -> None:
    if content is None:
        path = tmp_path / "missing.json"
    elif isinstance(content, str):
        path = tmp_path / "bad.json"
        path.write_text(content, encoding="utf-8")
    else:
        path = _snapshot(tmp_path, **content)
    capsys.readouterr()
    assert main(["decide", "--snapshot", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"fleet decide: error: snapshot {path}: ")
    assert message in lines[0]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decide"]) == 2
    assert main(["simulate", "--trace", "spike", "--seed", "-1"]) == 2
    assert main(["bench", "--seeds", "0"]) == 2
    err = capsys.readouterr().err
    assert "required: --snapshot" in err
    assert "--seed: -1 is below 0" in err
    assert "Traceback" not in err


# --- simulate --------------------------------------------------------------------------------------------------


def test_simulate_json_on_spike_is_deterministic_per_seed(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, "simulate", "--trace", "spike", "--json", "--seed", "3", "--controller", "policy")
    assert set(out) == {"trace", "policies", "target_tracking_requests_target", "cost_per_player_month"}
    assert out["target_tracking_requests_target"] in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert set(out["policies"]) == POLICIES
    for figures in out["policies"].values():
        assert set(figures) == METRIC_KEYS
        assert figures["gpu_hours"] > 0 and figures["cost_usd"] > 0
        assert isinstance(figures["scale_actions"], int)
    assert out["trace"] == {
        "name": "spike",
        "seed": 3,
        "duration_s": 10800.0,
        "mean_players": pytest.approx(1555.56, abs=0.01),
        "peak_players": 6000,
        "host_speed": 1.0,
    }
    costs = out["cost_per_player_month"]
    assert set(costs) == POLICIES
    for policy, per_players in costs.items():
        # 3 h of cost scaled to a 730 h month, spread over the players the trace has (1,556 on average), not
        # over 1,000 or 10,000 it does not have.
        month = out["policies"][policy]["cost_usd"] * 730 / 3
        assert per_players == {"1556": pytest.approx(month / out["trace"]["mean_players"])}

    again = _json(capsys, "simulate", "--trace", "spike", "--json", "--seed", "3", "--controller", "policy")
    assert again == out
    other = _json(capsys, "simulate", "--trace", "spike", "--json", "--seed", "4", "--controller", "policy")
    assert other["policies"] != out["policies"]


def test_host_speed_changes_the_world_not_the_policies(capsys: pytest.CaptureFixture[str]) -> None:
    def gpu_hours(speed: str) -> dict[str, float]:
        out = _json(
            capsys, "simulate", "--trace", "spike", "--json", "--controller", "policy", "--host-speed", speed
        )
        assert out["trace"]["host_speed"] == float(speed)
        return {name: figures["gpu_hours"] for name, figures in out["policies"].items()}

    slow, fast = gpu_hours("0.75"), gpu_hours("1.5")
    # The bound knows the truth: faster hosts, fewer hours. Ours learns it and follows.
    assert fast["clairvoyant"] < slow["clairvoyant"]
    assert fast["controller"] < slow["controller"]
    assert main(["simulate", "--trace", "spike", "--host-speed", "0"]) == 2
    assert "--host-speed: 0 is outside 0.05..20" in capsys.readouterr().err


def test_simulate_a_csv_trace_and_plot_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "evening.csv"
    csv.write_text("t_s,players\n0,300\n1200,2400\n2400,300\n3600,300\n", encoding="utf-8")
    plot = tmp_path / "evening.png"
    # The default controller: the deployed functions on moto.
    out = _json(capsys, "simulate", "--trace", str(csv), "--json", "--plot", str(plot))
    assert out["trace"]["name"] == "evening"
    assert out["trace"]["duration_s"] == 3600.0
    assert out["trace"]["peak_players"] == 2400
    assert set(out["policies"]) == POLICIES
    data = plot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000  # three tiers x three panels of lines, not an empty canvas

    assert main(["simulate", "--trace", str(csv), "--controller", "policy"]) == 0
    text = capsys.readouterr().out
    assert "evening: 1.0 h" in text
    assert "SLO violation min" in text
    assert "$/player-month" in text and "/player-month 1k" not in text and "10k" not in text
    assert "the trace's mean 1,000 players online" in " ".join(text.split())


def test_simulate_has_no_cost_per_player_for_a_trace_nobody_plays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "empty.csv"
    csv.write_text("t_s,players\n0,0\n600,0\n", encoding="utf-8")
    out = _json(capsys, "simulate", "--trace", str(csv), "--json", "--controller", "policy")
    assert out["trace"]["mean_players"] == 0
    assert out["cost_per_player_month"] == {policy: {} for policy in POLICIES}
    assert all(
        figures["cost_usd"] > 0 for figures in out["policies"].values()
    )  # the fleet's floor still costs
    assert main(["simulate", "--trace", str(csv), "--controller", "policy"]) == 0
    text = capsys.readouterr().out
    assert "no $/player-month: nobody is online in this trace" in text
    assert "$/player-month  " not in text


@pytest.mark.parametrize(
    ("trace", "message"),
    [
        ("no-such-trace", "unknown trace 'no-such-trace': not a built-in (ramp-10k, spike"),
        ("bad-header.csv", "bad-header.csv:1: header is 'time,players'"),
        ("negative.csv", "negative.csv:3: negative players -5"),
    ],
)
def test_simulate_rejects_bad_traces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trace: str, message: str
) -> None:
    (tmp_path / "bad-header.csv").write_text("time,players\n0,10\n60,10\n", encoding="utf-8")
    (tmp_path / "negative.csv").write_text("t_s,players\n0,10\n60,-5\n120,0\n", encoding="utf-8")
    argv = ["simulate", "--trace", trace if trace == "no-such-trace" else str(tmp_path / trace), "--json"]
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert captured.err.startswith("fleet simulate: error: ")
    assert message in captured.err


def test_simulate_reports_an_unwritable_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "short.csv"
    csv.write_text("t_s,players\n0,100\n600,100\n", encoding="utf-8")
    argv = [
        "simulate",
        "--trace",
        str(csv),
        "--controller",
        "policy",
        "--plot",
        str(tmp_path / "no" / "x.png"),
    ]
    assert main(argv) == 2
    assert "cannot write plot" in capsys.readouterr().err


# --- bench -----------------------------------------------------------------------------------------------------


def test_bench_prints_the_markdown_tables(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["bench", "--controller", "policy"]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    header = rows[0].strip("| ").split(" | ")
    assert header == [
        "trace",
        "policy",
        "gpu_hours",
        "cost_usd",
        "slo_violation_minutes",
        "p95_queue_wait_s",
        "scale_actions",
        "scale_ins_with_backlog",
        "gpu_hours / clairvoyant",
    ]
    traces = ("ramp-10k", "spike", "diurnal", "spot-storm", "azure-conv", "azure-code")
    body = [cells for r in rows[1:] if len(cells := r.strip("| ").split(" | ")) == 9 and cells[0] in traces]
    # The requests baseline is labelled with the target of its sweep it was reported at.
    assert {(r[0], r[1].partition(" (")[0]) for r in body} == {
        (trace, policy) for trace in traces for policy in POLICIES
    }
    assert all(r[-1] == "1.00" for r in body if r[1] == "clairvoyant")
    goal = [cells for r in rows if len(cells := r.strip("| ").split(" | ")) == 6 and cells[0] in traces]
    assert [r[0] for r in goal] == list(traces) and all(r[-1] in ("met", "not met") for r in goal)
    assert (
        "| players online (mean) | controller | target-tracking-gpu70 | target-tracking-requests "
        "| sqs-backlog-per-instance | clairvoyant |"
    ) in text
    per_player = {r.split(" | ")[0].strip("| ") for r in rows if r.startswith(("| 1,000 ", "| 10,000 "))}
    assert per_player == {"1,000", "10,000"}


# --- plot ------------------------------------------------------------------------------------------------------


def _points(data: Any) -> list[float]:
    """A line's x or y data as floats (matplotlib types them as any array-like)."""
    return [float(v) for v in data]


def test_the_plot_draws_headline_figures_objectives_interruptions_and_decisions() -> None:
    storm = SpotStorm(start_s=900.0, end_s=1800.0, interrupted_fraction=0.8)
    trace = Trace(
        name="storm", times_s=(0.0, 1200.0), players=(2_000, 4_000), duration_s=2700.0, spot_storm=storm
    )
    results = simulate(trace, {"controller": FleetPolicy, "target-tracking-gpu70": target_tracking_gpu70})
    fig = plot_figure(trace, results, seed=0)
    artists = {line.get_gid(): line for ax in fig.axes for line in ax.get_lines() if line.get_gid()}
    for tier in ("gold", "silver", "bronze"):
        # The objectives on every tier's axes, inside the axis' range (gold's 10 s wait objective too).
        for gid in (f"wait-objective-{tier}", f"latency-slo-{tier}"):
            line = artists[gid]
            level = _points(line.get_ydata())[0]
            assert line.axes is not None
            low, high = line.axes.get_ylim()
            assert low <= level < high
        assert f"scale-out-{tier}" in artists and f"scale-in-{tier}" in artists
    # The gold objectives are the tier policy's: 10 s of queue wait, 1 s P95.
    assert _points(artists["wait-objective-gold"].get_ydata())[0] == 10.0
    assert _points(artists["latency-slo-gold"].get_ydata())[0] == 1.0
    # Interruption notices: one cross per notice, for each policy that had them.
    gold = results["controller"].tiers["gold"]
    assert gold.spot_interruptions > 0
    crosses = artists["spot-interruptions-gold-controller"]
    assert len(_points(crosses.get_xdata())) == gold.spot_interruptions and crosses.get_marker() == "x"
    # Ours' scale-outs are where its desired count rose.
    desired = gold.series.desired
    assert len(_points(artists["scale-out-gold"].get_xdata())) == sum(
        1 for a, b in itertools.pairwise(desired) if b > a
    )
    # Headline figures per policy in the title; the legend outside the axes, one colour per policy.
    title = fig.get_suptitle()
    for name, result in results.items():
        assert f"{result.gpu_hours:8.1f} GPU-h" in title and name in title
        assert f"{result.slo_violation_minutes:5d} SLO-violation min" in title
    [legend] = fig.legends
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels[:2] == ["controller", "target-tracking-gpu70"]
    assert "Spot interruption notice" in labels and "objective (wait / latency P95)" in labels
    colours = {line.get_color() for ax in fig.axes[1::4] for line in ax.get_lines() if line.get_gid() is None}
    assert colours == {"tab:blue", "tab:orange"}


# --- report ----------------------------------------------------------------------------------------------------

COST_REPORT = Path(__file__).resolve().parents[2] / "docs" / "cost-report.md"


def _skeleton(markdown: str) -> list[str]:
    """The format of a report: its headings and its tables' header rows, numbers left out."""
    lines = markdown.splitlines()
    return [
        line
        for i, line in enumerate(lines)
        if line.startswith("#")
        or (line.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|--"))
    ]


def test_report_json_and_the_committed_cost_report_has_its_format(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, "report", "--players", "100", "--seeds", "1", "--json")
    assert list(out["players"]) == ["100"]
    data = out["players"]["100"]
    assert set(data["tiers"]) == {"gold", "silver", "bronze"}
    assert data["status_estimate"]["usd_per_month"] == pytest.approx(800.0)
    assert data["fleet"]["usd_per_month"] == pytest.approx(
        sum(t["usd_per_month"] for t in data["tiers"].values())
    )

    capsys.readouterr()
    assert main(["report", "--players", "100", "--seeds", "1", "--markdown"]) == 0
    generated = capsys.readouterr().out
    # The committed file is the generator's output (`make cost-report`, every player count, more seeds):
    # the same sections and tables, a row for every player count.
    committed = COST_REPORT.read_text(encoding="utf-8")
    assert _skeleton(committed) == _skeleton(generated)
    for n in ("100", "500", "1,000", "5,000", "10,000"):
        assert f"| {n} | gold |" in committed

    assert main(["report", "--players", "100", "--seeds", "1"]) == 0
    assert "fleet report, seeds 0..0" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--players", "0"], "--players: 0 players: must be at least 1"),
        (["--players", "100,lots"], "--players: 'lots' is not a whole number of players"),
        (["--players", "100,100"], "repeats a player count"),
        (["--seeds", "0"], "--seeds: 0 is below 1"),
        (["--json", "--markdown"], "not allowed with argument"),
    ],
)
def test_report_rejects_bad_arguments(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    capsys.readouterr()
    assert main(["report", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err and "Traceback" not in captured.err


def _rows(markdown: str, header_start: str) -> list[list[str]]:
    """The body rows of the table whose header starts with `header_start`, cells without commas."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().replace(",", "") for cell in line.strip("|").split("|")])
    return rows


def test_the_capacity_plan_quotes_the_committed_cost_report() -> None:
    report = COST_REPORT.read_text(encoding="utf-8")
    plan = (COST_REPORT.parent / "capacity-planning.md").read_text(encoding="utf-8")
    quotas = {r[0]: r[1:5] for r in _rows(report, "| players online | On-Demand vCPUs peak")}
    planned = {r[0]: r[1:5] for r in _rows(plan, "| players online (mean) | On-Demand vCPUs")}
    assert planned == quotas
    hosts = {(r[0], r[1]): f"{r[2]} / {r[3]}" for r in _rows(report, "| players online | tier | hosts mean")}
    for r in _rows(plan, "| players online (mean) | gold hosts"):
        assert [r[1], r[2], r[3]] == [hosts[(r[0], tier)] for tier in ("gold", "silver", "bronze")]
