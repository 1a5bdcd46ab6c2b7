"""Adapters: with the composition root (knowledge.services), the only knowledge modules that speak boto3,
botocore, psycopg or pgvector (and urllib, to CloudFormation); each raises knowledge.errors only.
tests/unit/test_architecture.py enforces it."""
