"""The stack's tier-target parameters (SSM, one per tier, template.yaml's <Tier>TierTarget), read by path."""

from __future__ import annotations

from collections.abc import Mapping

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import BotoCoreError, ClientError

from fleet.errors import FleetConfigurationError


def read_tier_targets(path: str) -> Mapping[str, str]:
    """Parameter values under `path`, by their last name segment (the tier)."""
    try:
        # Read once per cold start (the caller keeps the settings), so never from a cache.
        values = parameters.get_parameters(path, force_fetch=True)
    except (ClientError, BotoCoreError, GetParameterError) as exc:
        raise FleetConfigurationError(f"tier targets under {path} unreadable: {exc}") from exc
    return {str(name): str(value) for name, value in values.items()}
