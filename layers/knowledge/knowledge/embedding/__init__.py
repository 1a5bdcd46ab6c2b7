"""Embedders that run in-process: the local MiniLM model and the test-only hashing embedder.

The deployed embedder (Bedrock Titan) is an adapter: `knowledge.adapters.aws.bedrock`.
"""
