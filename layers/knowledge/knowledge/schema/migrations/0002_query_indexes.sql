-- Knowledge base schema, version 2: indexes of the query API.

-- Keyword half of hybrid search and the `concepts` search filter. English stemming matches "tithes" to
-- "tithe"; heading words count too. Generated and stored, so ingestion needs no change.
ALTER TABLE document_chunks
    ADD COLUMN search_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('english'::regconfig, heading || ' ' || content)) STORED;
CREATE INDEX document_chunks_search_tsv_idx ON document_chunks USING gin (search_tsv);

-- Search filters on front-matter metadata (`metadata @> {...}`, tags).
CREATE INDEX narrative_documents_metadata_idx ON narrative_documents USING gin (metadata jsonb_path_ops);

-- Context packs pick the events that involve the situation's concepts.
CREATE INDEX story_events_concepts_idx ON story_events USING gin (concept_ids);

