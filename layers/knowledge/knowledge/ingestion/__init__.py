"""Ingestion: an uploaded document through validate, parse, scrub, chunk, embed and store.

`steps` has one function per state of statemachines/ingestion.asl.json; `parsing`, `chunking` and
`notification` are the pure pieces they use.
"""
