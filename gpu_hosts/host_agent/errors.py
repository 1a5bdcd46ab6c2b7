"""The few errors the host agent speaks in; adapters turn boto3, HTTP and NVML failures into these."""

from __future__ import annotations


class HostAgentError(Exception):
    """Base of every error the host agent raises on purpose."""


class ConfigurationError(HostAgentError):
    """host.env (or the process environment) does not describe a usable host."""


class VllmUnavailableError(HostAgentError):
    """The local vLLM server did not answer, timed out or failed (5xx): worth retrying elsewhere."""


class VllmRequestRejectedError(HostAgentError):
    """vLLM refused the request itself (4xx: prompt too long, unknown model): retrying cannot help."""


class PoisonMessageError(HostAgentError):
    """A queue message is not a usable InferenceRequest; it goes to the dead-letter queue with the reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class QueueError(HostAgentError):
    """SQS refused or failed a receive, delete, visibility change or dead-letter send."""


class ResultPublishError(HostAgentError):
    """A result could not be published to its destination."""


class RegistryError(HostAgentError):
    """The host's item in the fleet hosts table could not be read or written."""


class MetricsPublishError(HostAgentError):
    """CloudWatch refused or failed PutMetricData."""


class GpuUnavailableError(HostAgentError):
    """NVML is missing, found no GPU, or failed to read one."""


class InstanceMetadataError(HostAgentError):
    """The instance metadata service (IMDSv2) did not answer."""


class ImageError(HostAgentError):
    """The host's image lacks its manifest or holds something other than what its tier needs."""
