-- Knowledge base schema, version 5: one database role per job, each with only what its job needs.
--
--   kb_reader        the knowledge API (storyteller): reads everything, writes nothing
--   kb_ingestion     the ingestion workflow: writes documents, chunks, concepts, relationships, quarantine
--   kb_story_events  story events: writes events and the concepts and relationships they change
--
-- The migrator (the cluster's master user) owns the schema and every object in it. Roles belong to the
-- cluster, not to one database, so another database may have created them already. No password is set
-- here: the MigrateDatabase function sets each role's from its own secret (password authentication refuses
-- a role without one). A later migration that adds a table grants its writers explicitly; kb_reader reads
-- new tables through the default privileges below.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['kb_reader', 'kb_ingestion', 'kb_story_events'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I LOGIN', role_name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- made by another database of the cluster, or by a concurrent run there
        END;
    END LOOP;
END
$$;

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO kb_reader, kb_ingestion, kb_story_events;

GRANT SELECT ON ALL TABLES IN SCHEMA public TO kb_reader, kb_ingestion, kb_story_events;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO kb_reader;

GRANT INSERT, UPDATE, DELETE
    ON worlds, narrative_documents, document_chunks, narrative_concepts, concept_versions,
       concept_relationships, quarantined_uploads
    TO kb_ingestion;

GRANT INSERT, UPDATE ON story_events, narrative_concepts, concept_versions, concept_relationships
    TO kb_story_events;

-- A world's first document creates its chunk partition (0003's trigger): DDL only the owner may run, so the
-- trigger runs with the owner's rights, on a fixed search path.
ALTER FUNCTION worlds_create_chunk_partition() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION create_document_chunks_partition(text) SET search_path = public, pg_temp;
