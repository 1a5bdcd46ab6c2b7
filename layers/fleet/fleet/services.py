"""Composition root of the fleet functions: settings read once, clients and adapters built lazily."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

from fleet.adapters.actuator import AutoScalingActuator
from fleet.adapters.signals import TierSignalReader
from fleet.adapters.state_store import TierStateStore
from fleet.adapters.tier_targets import read_tier_targets
from fleet.config import FleetSettings

# botocore's defaults (60 s connect and read, retried) outlast a tick; these APIs answer in milliseconds, and a
# tick that fails is redone by the next one a minute later.
CLIENT_CONFIG = Config(
    connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 2}
)


class FleetServices:
    def __init__(self, settings: FleetSettings) -> None:
        self.settings = settings

    @classmethod
    def from_env(cls) -> FleetServices:
        return cls(FleetSettings.from_env(read_tier_targets=read_tier_targets))

    @functools.cached_property
    def autoscaling(self) -> Any:
        return boto3.client("autoscaling", config=CLIENT_CONFIG)

    @functools.cached_property
    def dynamodb(self) -> Any:
        return boto3.client("dynamodb", config=CLIENT_CONFIG)

    @functools.cached_property
    def reader(self) -> TierSignalReader:
        return TierSignalReader(
            boto3.client("sqs", config=CLIENT_CONFIG),
            boto3.client("cloudwatch", config=CLIENT_CONFIG),
            self.autoscaling,
        )

    @functools.cached_property
    def store(self) -> TierStateStore:
        return TierStateStore(self.dynamodb, self.settings.state_table)

    @functools.cached_property
    def actuator(self) -> AutoScalingActuator:
        return AutoScalingActuator(self.autoscaling, self.dynamodb, self.settings.hosts_table)
