-- Knowledge base schema, version 7: what each document contributed, so that deleting it removes exactly that.
--
-- A concept or relationship may be declared by several documents (and concepts touched by story events).
-- One row per (concept or relationship, document) records the declaration with the description it gave;
-- deleting a document removes the concepts, concept versions and relationships that no other document
-- (or story event) also declares, and hands the rest to a remaining declaration.
CREATE TABLE concept_sources (
    concept_id bigint NOT NULL REFERENCES narrative_concepts (concept_id) ON DELETE CASCADE,
    document_id bigint NOT NULL REFERENCES narrative_documents (document_id) ON DELETE CASCADE,
    description text NOT NULL DEFAULT '',
    PRIMARY KEY (concept_id, document_id)
);
CREATE INDEX concept_sources_document_idx ON concept_sources (document_id);

CREATE TABLE relationship_sources (
    relationship_id bigint NOT NULL REFERENCES concept_relationships (relationship_id) ON DELETE CASCADE,
    document_id bigint NOT NULL REFERENCES narrative_documents (document_id) ON DELETE CASCADE,
    description text NOT NULL DEFAULT '',
    PRIMARY KEY (relationship_id, document_id)
);
CREATE INDEX relationship_sources_document_idx ON relationship_sources (document_id);

-- What existing rows tell: the documents that versioned a concept, the document a relationship names.
-- (A document that declared a concept without changing it left no trace before this migration.)
INSERT INTO concept_sources (concept_id, document_id, description)
SELECT DISTINCT ON (concept_id, source_document_id) concept_id, source_document_id, description
FROM concept_versions
WHERE source_document_id IS NOT NULL
ORDER BY concept_id, source_document_id, version DESC;

INSERT INTO relationship_sources (relationship_id, document_id, description)
SELECT relationship_id, source_document_id, description
FROM concept_relationships
WHERE source_document_id IS NOT NULL;

-- The writers of 0005: ingestion keeps these tables; story events read them.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kb_ingestion') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON concept_sources, relationship_sources TO kb_ingestion;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kb_story_events') THEN
        GRANT SELECT ON concept_sources, relationship_sources TO kb_story_events;
    END IF;
END
$$;
