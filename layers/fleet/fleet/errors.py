"""The few errors the fleet domain speaks in; adapters turn boto3 failures into these."""

from __future__ import annotations


class FleetError(Exception):
    """Base of every error the fleet domain raises on purpose."""


class SignalsUnavailableError(FleetError):
    """SQS, CloudWatch or Auto Scaling could not be read: the tier holds this tick."""


class ScalingActionError(FleetError):
    """Auto Scaling refused or failed a capacity change."""


class FleetConfigurationError(FleetError):
    """The controller's environment does not describe a usable fleet."""


class StateConflictError(FleetError):
    """The tier's stored state changed between this tick's read and its write (the other scheduled
    function wrote it): the tick decides again from the new state."""
