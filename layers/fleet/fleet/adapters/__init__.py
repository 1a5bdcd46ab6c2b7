"""Adapters: with the composition root (fleet.services), the only fleet modules that speak boto3 or
botocore; each raises fleet.errors only. tests/unit/test_architecture.py enforces it."""
