"""The storyteller knowledge base: narrative documents in, world-scoped knowledge out (the KnowledgeLayer).

ingestion/, queries/, story_events/ are the three jobs; embedding/ and schema/ serve them; adapters/ speak
to AWS and PostgreSQL; ports, model, errors, config and pii are shared; services wires it all once per
process. docs/architecture.md has the rules.
"""
