"""How long a knowledge function waits for S3, SNS, SQS and DynamoDB (Bedrock and Secrets Manager have their own).

botocore's defaults are a 60 s connect and a 60 s read timeout per attempt, retried: longer than the API's
28 s or story events' 30 s on their own. These services answer in milliseconds, so a few seconds per attempt
and one retry (standard mode, with jittered back-off; at most 20 s in all) ride out a blip and still leave the
function time to fail cleanly: a domain error, a retry by the state machine, a DLQ.
A read timeout bounds each wait for bytes, not a whole transfer, so a large S3 object still streams.
"""

from __future__ import annotations

from botocore.config import Config

__all__ = ["service_client_config"]


def service_client_config() -> Config:
    return Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 2})
