-- Knowledge base schema, version 12: vectors are stored in the row, not in TOAST.
--
-- pgvector's type defaults to STORAGE EXTERNAL: a row over about 2 KB has its vector moved out of line,
-- and a chunk's row (a 1.5 KB vector at 384 dimensions, 4 KB at Titan's 1,024, plus its text) always is.
-- Every distance computed from the heap then reads the TOAST index and its pages first: an exact search
-- of a small world in the shared partition (0010) read 1,238 buffers for 400 rows, 37 of them heap. With
-- STORAGE MAIN the vector stays in the row (moved out only if the row would not fit in a page) and the
-- text, compressible, goes out of line first: the same search reads 300 buffers and runs 2.7x faster
-- (docs/benchmarks.md, "Worlds with a parent"). HNSW scans gain less: the graph holds its own vectors.
--
-- The setting applies to rows written from now on. Rows already written keep their out-of-line vectors
-- until rewritten: a promotion rewrites a world's rows, and `VACUUM FULL document_chunks_default` (an
-- exclusive lock while it runs: docs/runbooks/database.md, "Maintenance") the shared
-- partition's.

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY embedding_generation_tables() LOOP
        -- On document_chunks this reaches every partition, the default one included.
        EXECUTE format('ALTER TABLE %I ALTER COLUMN embedding SET STORAGE MAIN', t);
        IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = t::regclass AND attname = 'embedding_next'
                   AND NOT attisdropped) THEN
            EXECUTE format('ALTER TABLE %I ALTER COLUMN embedding_next SET STORAGE MAIN', t);
        END IF;
    END LOOP;
END
$$;

-- A rebuild's new column is stored the same way (0011's function, with the storage set after the ADD).
CREATE OR REPLACE FUNCTION begin_embedding_generation(model text, dimension integer) RETURNS bigint
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
        EXECUTE format('ALTER TABLE %I ALTER COLUMN embedding_next SET STORAGE MAIN', t);
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

-- A promoted world's partition copies the parent's storage (0010's function, with INCLUDING STORAGE).
CREATE OR REPLACE FUNCTION promote_world_chunks(world text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    part text := document_chunks_partition_name(world);
    columns text := document_chunks_copy_columns();
BEGIN
    IF to_regclass(part) IS NOT NULL OR (
        SELECT count(*) FROM (SELECT FROM document_chunks_default WHERE world_id = world
                              LIMIT document_chunks_own_partition_threshold()) AS enough
    ) < document_chunks_own_partition_threshold() THEN
        RETURN false;
    END IF;
    -- The CHECK spares ATTACH a scan of the new table; its indexes match the parent's, so ATTACH builds none.
    EXECUTE format(
        'CREATE TABLE %I (LIKE document_chunks INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS'
        ' INCLUDING INDEXES INCLUDING STORAGE, CONSTRAINT %I CHECK (world_id = %L))',
        part, part || '_world', world
    );
    EXECUTE format(
        'INSERT INTO %I (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM document_chunks_default WHERE world_id = %L',
        part, columns, columns, world
    );
    -- Straight from the partition: the rows move, so the keyword statistics (0008) stay as they are.
    DELETE FROM document_chunks_default WHERE world_id = world;
    EXECUTE format('CREATE INDEX ON %I USING hnsw (embedding vector_cosine_ops)', part);
    -- Statistics before the first search plans against the table (else it looks empty: no graph).
    EXECUTE format('ANALYZE %I', part);
    EXECUTE format('ALTER TABLE document_chunks ATTACH PARTITION %I FOR VALUES IN (%L)', part, world);
    RETURN true;
END
$$;
