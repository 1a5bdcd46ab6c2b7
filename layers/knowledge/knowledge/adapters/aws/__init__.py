"""AWS adapters: S3 objects and workflow payloads, SQS dead letters, SNS notifications, Bedrock embeddings,
CloudFormation custom-resource responses."""
