"""Adapters: the only fleet modules that speak boto3; they raise fleet.errors only."""
