-- Knowledge base schema: embedding generations, so the embedding model (and its dimension) can change
-- while the knowledge base keeps serving (the re-embedding workflow, statemachines/reembed.asl.json).
--
-- A generation is one model's vectors. kb_settings names the live one; a rebuild adds a column
-- `embedding_next vector(<new dimension>)` beside every `embedding` column, fills it batch by batch while
-- searches keep reading `embedding`, and then one transaction swaps the columns (the old ones stay as
-- `embedding_retired` until the retire step drops them). DDL on these tables is the owner's, so the steps
-- are functions that run with the owner's rights; kb_ingestion, which runs the workflow, may call them.

CREATE TABLE embedding_generations (
    generation_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    embedding_model text NOT NULL CHECK (embedding_model <> ''),
    embedding_dimension integer NOT NULL CHECK (embedding_dimension BETWEEN 1 AND 16000),
    previous_model text NOT NULL,
    previous_dimension integer NOT NULL,
    status text NOT NULL DEFAULT 'building' CHECK (status IN ('building', 'live', 'retired', 'abandoned')),
    started_at timestamptz NOT NULL DEFAULT now(),
    switched_at timestamptz,
    previous_dropped_at timestamptz,
    ended_at timestamptz
);
-- One rebuild at a time, and one live generation.
CREATE UNIQUE INDEX embedding_generations_one_building ON embedding_generations ((true)) WHERE status = 'building';
CREATE UNIQUE INDEX embedding_generations_one_live ON embedding_generations ((true)) WHERE status = 'live';

-- Every table with an embedding column. narrative_documents' vector is derived (the normalised mean of its
-- chunks'), recomputed at the switch; the others are embedded again from their text.
CREATE FUNCTION embedding_generation_tables() RETURNS text[]
    LANGUAGE sql IMMUTABLE
    RETURN ARRAY['document_chunks', 'narrative_documents', 'narrative_concepts', 'concept_versions',
                 'story_events'];

-- A row whose vector the live model rewrites during a rebuild (a concept's new description, an erasure)
-- loses its new-generation vector too, so the catch-up pass embeds what it says now.
CREATE FUNCTION embedding_next_reset() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.embedding IS DISTINCT FROM OLD.embedding AND NEW.embedding_next IS NOT DISTINCT FROM OLD.embedding_next THEN
        NEW.embedding_next := NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION drop_embedding_generation_columns(column_name text) RETURNS void
    LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY embedding_generation_tables() LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS embedding_next_reset ON %I', t);
        EXECUTE format('ALTER TABLE %I DROP COLUMN IF EXISTS %I', t, column_name);
    END LOOP;
END
$$;

CREATE FUNCTION begin_embedding_generation(model text, dimension integer) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    live record;
    generation bigint;
    t text;
BEGIN
    SELECT embedding_model, embedding_dimension INTO live FROM kb_settings FOR UPDATE;
    IF live.embedding_model = model AND live.embedding_dimension = dimension THEN
        RAISE EXCEPTION 'the live generation already embeds with % at % dimensions', model, dimension
            USING ERRCODE = 'KBG01';
    END IF;
    IF EXISTS (SELECT FROM embedding_generations WHERE status = 'building') THEN
        RAISE EXCEPTION 'a rebuild is already under way' USING ERRCODE = 'KBG02';
    END IF;
    INSERT INTO embedding_generations (embedding_model, embedding_dimension, previous_model, previous_dimension)
        VALUES (model, dimension, live.embedding_model, live.embedding_dimension)
        RETURNING generation_id INTO generation;
    -- Left over by an abandoned rebuild that could not clean up: its vectors are of no use now.
    PERFORM drop_embedding_generation_columns('embedding_next');
    FOREACH t IN ARRAY embedding_generation_tables() LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN embedding_next vector(%s)', t, dimension);
        IF t <> 'narrative_documents' THEN
            EXECUTE format('CREATE TRIGGER embedding_next_reset BEFORE UPDATE ON %I'
                           ' FOR EACH ROW EXECUTE FUNCTION embedding_next_reset()', t);
        END IF;
    END LOOP;
    -- kb_ingestion writes the new vectors; it has no other right on story_events.
    GRANT UPDATE (embedding_next) ON story_events TO kb_ingestion;
    RETURN generation;
END
$$;

CREATE FUNCTION abandon_embedding_generation(generation bigint) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    t text;
BEGIN
    UPDATE embedding_generations SET status = 'abandoned', ended_at = now()
        WHERE generation_id = generation AND status = 'building';
    IF NOT FOUND THEN
        RETURN;  -- switched already (nothing to undo here), or abandoned before
    END IF;
    PERFORM drop_embedding_generation_columns('embedding_next');
END
$$;

-- How many rows still lack a vector of the new generation (the catch-up pass embeds them).
CREATE FUNCTION embedding_generation_missing() RETURNS bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    RETURN (SELECT count(*) FROM document_chunks WHERE embedding_next IS NULL)
         + (SELECT count(*) FROM narrative_concepts WHERE embedding IS NOT NULL AND embedding_next IS NULL)
         + (SELECT count(*) FROM concept_versions WHERE embedding IS NOT NULL AND embedding_next IS NULL)
         + (SELECT count(*) FROM story_events WHERE embedding IS NOT NULL AND embedding_next IS NULL);
END
$$;

CREATE FUNCTION switch_embedding_generation(generation bigint) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    target record;
    missing bigint;
    t text;
    part text;
BEGIN
    -- kb_settings first: a store that read the live model holds it (share) until it commits.
    PERFORM 1 FROM kb_settings FOR UPDATE;
    SELECT * INTO target FROM embedding_generations WHERE generation_id = generation FOR UPDATE;
    IF target IS NULL OR target.status <> 'building' THEN
        RAISE EXCEPTION 'generation % is not being built', generation USING ERRCODE = 'KBG03';
    END IF;
    -- Writers wait from here to the commit; searches go on reading the old vectors until the renames.
    LOCK TABLE document_chunks, narrative_documents, narrative_concepts, concept_versions, story_events
        IN SHARE ROW EXCLUSIVE MODE;
    missing := embedding_generation_missing();
    IF missing > 0 THEN
        RAISE EXCEPTION '% rows were written during the rebuild and lack a vector of generation %',
            missing, generation USING ERRCODE = 'KBG04';
    END IF;
    UPDATE narrative_documents d SET embedding_next = (
        SELECT l2_normalize(avg(c.embedding_next)) FROM document_chunks c
        WHERE c.document_id = d.document_id AND c.world_id = d.world_id);
    -- The new graphs are built before the renames, so searches block only for the renames themselves.
    -- Chunks have a graph per partition of a large world and none in the shared default partition (0010).
    FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'document_chunks'::regclass AND c.relname <> 'document_chunks_default' LOOP
        EXECUTE format('CREATE INDEX ON %I USING hnsw (embedding_next vector_cosine_ops)', part);
    END LOOP;
    FOREACH t IN ARRAY embedding_generation_tables() LOOP
        CONTINUE WHEN t = 'document_chunks';
        EXECUTE format('CREATE INDEX %I ON %I USING hnsw (embedding_next vector_cosine_ops)',
                       t || '_embedding_next_idx', t);
    END LOOP;
    FOREACH t IN ARRAY embedding_generation_tables() LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS embedding_next_reset ON %I', t);
        -- The old graphs of chunk partitions go with their column, at the retire step.
        IF t <> 'document_chunks' THEN
            EXECUTE format('DROP INDEX IF EXISTS %I', t || '_embedding_idx');
        END IF;
        EXECUTE format('ALTER TABLE %I DROP COLUMN IF EXISTS embedding_retired', t);
        EXECUTE format('ALTER TABLE %I RENAME COLUMN embedding TO embedding_retired', t);
        EXECUTE format('ALTER TABLE %I RENAME COLUMN embedding_next TO embedding', t);
        IF t <> 'document_chunks' THEN
            EXECUTE format('ALTER INDEX %I RENAME TO %I', t || '_embedding_next_idx', t || '_embedding_idx');
        END IF;
    END LOOP;
    ALTER TABLE document_chunks ALTER COLUMN embedding_retired DROP NOT NULL;
    ALTER TABLE document_chunks ALTER COLUMN embedding SET NOT NULL;
    -- The column-level grant of the rebuild followed its column through the rename.
    REVOKE UPDATE (embedding) ON story_events FROM kb_ingestion;
    UPDATE narrative_documents SET embedding_model = target.embedding_model;
    UPDATE kb_settings SET embedding_model = target.embedding_model,
                           embedding_dimension = target.embedding_dimension;
    UPDATE embedding_generations SET status = 'retired', ended_at = now() WHERE status = 'live';
    UPDATE embedding_generations SET status = 'live', switched_at = now() WHERE generation_id = generation;
END
$$;

-- The old vectors are kept until this runs: until then `embedding_retired` still holds them.
CREATE FUNCTION retire_embedding_generation(generation bigint) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    t text;
BEGIN
    IF NOT EXISTS (SELECT FROM embedding_generations WHERE generation_id = generation AND status = 'live') THEN
        RAISE EXCEPTION 'generation % is not live', generation USING ERRCODE = 'KBG03';
    END IF;
    PERFORM drop_embedding_generation_columns('embedding_retired');
    UPDATE embedding_generations SET previous_dropped_at = now() WHERE generation_id = generation;
END
$$;

GRANT SELECT ON embedding_generations TO kb_ingestion;
REVOKE EXECUTE ON FUNCTION begin_embedding_generation(text, integer), abandon_embedding_generation(bigint),
    switch_embedding_generation(bigint), retire_embedding_generation(bigint), embedding_generation_missing()
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION begin_embedding_generation(text, integer), abandon_embedding_generation(bigint),
    switch_embedding_generation(bigint), retire_embedding_generation(bigint), embedding_generation_missing()
    TO kb_ingestion;
