-- Knowledge base schema, version 1.
-- __EMBEDDING_DIMENSION__ is replaced by the deployment's embedding dimension before this file runs; the
-- dimension and model are then recorded in kb_settings and checked on every later run.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE kb_settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    embedding_model text NOT NULL,
    embedding_dimension integer NOT NULL CHECK (embedding_dimension > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE worlds (
    world_id text PRIMARY KEY CHECK (world_id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE narrative_documents (
    document_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    world_id text NOT NULL REFERENCES worlds (world_id),
    s3_key text NOT NULL,
    title text NOT NULL,
    media_type text NOT NULL,
    content_sha256 text NOT NULL CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
    chunk_count integer NOT NULL DEFAULT 0,
    token_count integer NOT NULL DEFAULT 0,
    pii_redactions jsonb NOT NULL DEFAULT '{}'::jsonb,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    embedding_model text NOT NULL,
    -- Mean of the chunk vectors, normalised: document-level similarity.
    embedding vector(__EMBEDDING_DIMENSION__),
    version integer NOT NULL DEFAULT 1,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (world_id, s3_key)
);

CREATE TABLE document_chunks (
    chunk_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES narrative_documents (document_id) ON DELETE CASCADE,
    world_id text NOT NULL REFERENCES worlds (world_id),
    ordinal integer NOT NULL CHECK (ordinal >= 0),
    heading text NOT NULL DEFAULT '',
    content text NOT NULL,
    token_count integer NOT NULL CHECK (token_count >= 0),
    -- Character offsets into the document's source text: citations.
    start_offset integer NOT NULL CHECK (start_offset >= 0),
    end_offset integer NOT NULL CHECK (end_offset >= start_offset),
    embedding vector(__EMBEDDING_DIMENSION__) NOT NULL,
    UNIQUE (document_id, ordinal)
);
CREATE INDEX document_chunks_world_idx ON document_chunks (world_id);

CREATE TABLE narrative_concepts (
    concept_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    world_id text NOT NULL REFERENCES worlds (world_id),
    name text NOT NULL,
    kind text NOT NULL DEFAULT 'concept',
    description text NOT NULL DEFAULT '',
    current_version integer NOT NULL DEFAULT 1,
    embedding vector(__EMBEDDING_DIMENSION__),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX narrative_concepts_world_name_idx ON narrative_concepts (world_id, lower(name));

CREATE TABLE concept_versions (
    concept_version_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    concept_id bigint NOT NULL REFERENCES narrative_concepts (concept_id) ON DELETE CASCADE,
    version integer NOT NULL CHECK (version > 0),
    description text NOT NULL,
    embedding vector(__EMBEDDING_DIMENSION__),
    source_document_id bigint REFERENCES narrative_documents (document_id) ON DELETE SET NULL,
    source_s3_key text,
    source_event_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (concept_id, version)
);

CREATE TABLE concept_relationships (
    relationship_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    world_id text NOT NULL REFERENCES worlds (world_id),
    source_concept_id bigint NOT NULL REFERENCES narrative_concepts (concept_id) ON DELETE CASCADE,
    target_concept_id bigint NOT NULL REFERENCES narrative_concepts (concept_id) ON DELETE CASCADE,
    relation_type text NOT NULL CHECK (relation_type ~ '^[a-z][a-z0-9_]{0,62}$'),
    description text NOT NULL DEFAULT '',
    source_document_id bigint REFERENCES narrative_documents (document_id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_concept_id, target_concept_id, relation_type)
);
CREATE INDEX concept_relationships_target_idx ON concept_relationships (target_concept_id);

CREATE TABLE story_events (
    event_id text PRIMARY KEY,
    world_id text NOT NULL REFERENCES worlds (world_id),
    occurred_at timestamptz NOT NULL,
    kind text NOT NULL,
    summary text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}'::jsonb,
    concept_ids bigint[] NOT NULL DEFAULT '{}',
    embedding vector(__EMBEDDING_DIMENSION__),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX story_events_world_time_idx ON story_events (world_id, occurred_at DESC);

-- Uploads that could not be ingested, with why; the object itself was moved under quarantine/.
CREATE TABLE quarantined_uploads (
    quarantine_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    world_id text,
    s3_key text NOT NULL,
    quarantine_key text NOT NULL,
    reason_code text NOT NULL,
    reason text NOT NULL,
    content_sha256 text,
    size_bytes bigint,
    event_id text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX quarantined_uploads_event_idx ON quarantined_uploads (s3_key, event_id);

-- Cosine distance HNSW indexes on every vector column (the embedders emit unit vectors).
CREATE INDEX narrative_documents_embedding_idx ON narrative_documents USING hnsw (embedding vector_cosine_ops);
CREATE INDEX document_chunks_embedding_idx ON document_chunks USING hnsw (embedding vector_cosine_ops);
CREATE INDEX narrative_concepts_embedding_idx ON narrative_concepts USING hnsw (embedding vector_cosine_ops);
CREATE INDEX concept_versions_embedding_idx ON concept_versions USING hnsw (embedding vector_cosine_ops);
CREATE INDEX story_events_embedding_idx ON story_events USING hnsw (embedding vector_cosine_ops);
