"""Queries of the storyteller API: search, context packs, concept history, relationships, the timeline.

`api` holds the HTTP routes (functions/knowledge_api), `models` their requests and responses; `search`
and `context_pack` are the domain on top of the SQL in `knowledge.adapters.postgres`.
"""
