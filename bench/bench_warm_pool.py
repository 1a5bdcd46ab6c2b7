"""Does an On-Demand warm pool for the first hosts of each tier pay off? Ours (the controller tick code in
memory) on every built-in and recorded trace, with no pool and with pools of 2 and 4 stopped hosts per tier
(fleet_sim.model.WARM_BOOT_FRACTION, STOPPED_HOST_USD_PER_H), each figure the mean of seeds 0..N-1.

Warm pools cannot be attached to the tiers' mixed-instance Spot groups, so a pool means a second,
On-Demand group per tier: its hosts boot faster but pay On-Demand prices. Run: `python bench/bench_warm_pool.py
[--seeds 3] [--json]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from fleet_sim import BUILTIN_TRACES, FleetPolicy, default_world, load_trace, simulate
from fleet_sim.traces import RECORDED_TRACES

POOL_SIZES = (0, 2, 4)


def run(seeds: int) -> dict[str, Any]:
    out: dict[str, Any] = {"seeds": list(range(seeds)), "traces": {}}
    for name in (*BUILTIN_TRACES, *RECORDED_TRACES):
        trace = load_trace(name)
        by_pool: dict[str, dict[str, float]] = {}
        for size in POOL_SIZES:
            base = default_world()
            world = dataclasses.replace(
                base,
                tiers={
                    tier: dataclasses.replace(model, warm_pool_size=min(size, model.policy.max_hosts))
                    for tier, model in base.tiers.items()
                },
            )
            results = [
                simulate(trace, {"ours": FleetPolicy}, seed=s, world=world)["ours"] for s in range(seeds)
            ]
            by_pool[str(size)] = {
                "gpu_hours": sum(r.gpu_hours for r in results) / seeds,
                "cost_usd": sum(r.cost_usd for r in results) / seeds,
                "slo_violation_minutes": sum(r.slo_violation_minutes for r in results) / seeds,
            }
        out["traces"][name] = by_pool
    return out


def markdown(out: dict[str, Any]) -> str:
    lines = [
        f"Ours, seeds {out['seeds'][0]}..{out['seeds'][-1]} (mean); warm pool = stopped On-Demand hosts per tier.",
        "",
        "| trace | warm pool | gpu_hours | cost_usd | slo_violation_minutes | cost vs no pool |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for trace, by_pool in out["traces"].items():
        none = by_pool["0"]["cost_usd"]
        for size, f in by_pool.items():
            lines.append(
                f"| {trace} | {size} | {f['gpu_hours']:.1f} | {f['cost_usd']:.2f} "
                f"| {f['slo_violation_minutes']:.1f} | {f['cost_usd'] / none:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = run(args.seeds)
    print(json.dumps(out, indent=2) if args.json else markdown(out))


if __name__ == "__main__":
    main()
