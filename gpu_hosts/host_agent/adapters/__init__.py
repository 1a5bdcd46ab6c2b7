"""I/O adapters: boto3 (SQS, SNS, DynamoDB, CloudWatch), HTTP (vLLM, IMDSv2) and NVML."""
