"""Adapters: the only modules that speak boto3 or psycopg; they raise knowledge.errors only."""
