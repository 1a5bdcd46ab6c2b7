"""Trace simulator of the GPU fleet's autoscaling (development only; never deployed).

Replays a player trace against the three tiers' Auto Scaling groups in a simulated world (demand, boot
times, Spot interruptions, latency, prices: `model`) and compares scaling policies: ours, either as the
deployed controller functions invoked on moto every tick (`deployed.DeployedController`) or as the same
controller tick code with in-memory adapters (`baselines.FleetPolicy`, fast), and two AWS-documented
baselines (`baselines`). Entry point: `simulate`.
"""

from fleet_sim.baselines import (
    BASELINES,
    Controller,
    FleetPolicy,
    PolicyFactory,
    TargetTracking,
    default_policies,
    sqs_backlog_per_instance,
    static_policy,
    target_tracking_gpu70,
)
from fleet_sim.model import Observation, WorldModel, default_world
from fleet_sim.simulator import (
    FleetController,
    FleetWide,
    PolicyResult,
    TierResult,
    TierSeries,
    cost_per_player_month,
    simulate,
)
from fleet_sim.traces import BUILTIN_TRACES, SpotStorm, Trace, TraceError, load_trace

__all__ = [
    "BASELINES",
    "BUILTIN_TRACES",
    "Controller",
    "FleetController",
    "FleetPolicy",
    "FleetWide",
    "Observation",
    "PolicyFactory",
    "PolicyResult",
    "SpotStorm",
    "TargetTracking",
    "TierResult",
    "TierSeries",
    "Trace",
    "TraceError",
    "WorldModel",
    "cost_per_player_month",
    "default_policies",
    "default_world",
    "load_trace",
    "simulate",
    "sqs_backlog_per_instance",
    "static_policy",
    "target_tracking_gpu70",
]
