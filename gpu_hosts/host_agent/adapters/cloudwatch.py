"""PutMetricData in batches; CloudWatch errors become MetricsPublishError."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from host_agent.errors import MetricsPublishError
from host_agent.metric_data import MAX_DATA_PER_CALL, batches


class CloudWatchMetrics:
    def __init__(self, cloudwatch: Any, namespace: str, batch_size: int = MAX_DATA_PER_CALL) -> None:
        self._cloudwatch, self._namespace, self._batch_size = cloudwatch, namespace, batch_size

    def put(self, data: Sequence[dict[str, Any]]) -> int:
        """Returns the number of PutMetricData calls made."""
        calls = 0
        for batch in batches(data, self._batch_size):
            try:
                self._cloudwatch.put_metric_data(Namespace=self._namespace, MetricData=batch)
            except (ClientError, BotoCoreError) as exc:
                raise MetricsPublishError(f"PutMetricData to {self._namespace}: {exc}") from exc
            calls += 1
        return calls
