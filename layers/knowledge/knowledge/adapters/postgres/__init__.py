"""PostgreSQL + pgvector adapters: the connection pools and every SQL statement of the knowledge base.

Functions take an open connection (inside the caller's transaction, or the read pool's autocommit one).
"""
