-- Knowledge base schema, version 10: small worlds share one chunk partition; only large worlds get their own.
--
-- With a partition (and an HNSW graph) per world, every new world ran DDL inside the ingesting transaction
-- and locked document_chunks until it committed, so searches of all worlds waited; at 10,000 worlds the
-- catalog holds tens of thousands of relations and a generic plan spans all of them (bench/bench_search.py
-- --layouts, docs/benchmarks.md "Many worlds"). Now:
--
-- * A world's chunks start in the DEFAULT partition, shared by all small worlds and searched exactly
--   through its (world_id) index: a few hundred distances are cheap, and exact search has recall 1.0. The
--   default partition has no HNSW graph. Creating a world runs no DDL, so it never blocks a search.
-- * A world with at least document_chunks_own_partition_threshold() chunks is moved to a partition of its
--   own, with its own HNSW graph, by promote_world_chunks(world) (knowledge.adapters.postgres.partitions),
--   which ingestion runs in a transaction of its own after the document's has committed: the table and
--   its indexes are built while searches still read the world's rows from the default partition, then
--   ATTACH PARTITION (SHARE UPDATE EXCLUSIVE on document_chunks) swaps them in at commit. Its ACCESS EXCLUSIVE lock on the default partition lasts from the ATTACH to
--   the commit: one scan of the default partition, during which only searches of small worlds wait.
--
-- The search SQL is unchanged: the world condition prunes to the world's partition, and the planner takes
-- the graph where the partition has one and the (world_id) index elsewhere.

DROP TRIGGER worlds_chunk_partition ON worlds;
DROP FUNCTION worlds_create_chunk_partition();
DROP FUNCTION create_document_chunks_partition(text);

-- Where exact search of one world's rows stops being cheaper than its own graph (docs/benchmarks.md).
CREATE FUNCTION document_chunks_own_partition_threshold() RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 500;

-- The columns a copy of chunk rows writes: all but the generated ones, in table order.
CREATE FUNCTION document_chunks_copy_columns() RETURNS text
    LANGUAGE sql STABLE SET search_path = public, pg_temp
    RETURN (SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
            WHERE attrelid = 'document_chunks'::regclass AND attnum > 0 AND NOT attisdropped
              AND attgenerated = '');

-- Moves one world's chunks from the default partition to a partition of its own; false when it already
-- has one or has fewer chunks than the threshold. Runs in the caller's transaction, which should hold
-- nothing else (see the header). Ingestion calls it after each commit: DDL only the owner may run, so it
-- runs with the owner's rights, on a fixed search path (as 0005 did for the trigger it replaces).
CREATE FUNCTION promote_world_chunks(world text) RETURNS boolean
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
        ' INCLUDING INDEXES, CONSTRAINT %I CHECK (world_id = %L))',
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

-- Existing partitions: small worlds move into the default partition; large ones keep their table and
-- graph (a detached partition keeps its indexes; the parent's HNSW index goes, the default's with it).
DO $$
DECLARE
    w record;
    n bigint;
    columns text := document_chunks_copy_columns();
    kept text[] := '{}';
    world text;
BEGIN
    FOR w IN SELECT world_id, to_regclass(document_chunks_partition_name(world_id)) AS part
             FROM worlds ORDER BY world_id LOOP
        CONTINUE WHEN w.part IS NULL;
        EXECUTE format('ALTER TABLE document_chunks DETACH PARTITION %s', w.part);
        EXECUTE format('SELECT count(*) FROM %s', w.part) INTO n;
        IF n >= document_chunks_own_partition_threshold() THEN
            kept := kept || w.world_id;
        ELSE
            EXECUTE format(
                'INSERT INTO document_chunks_default (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s',
                columns, columns, w.part
            );
            EXECUTE format('DROP TABLE %s', w.part);
        END IF;
    END LOOP;
    DROP INDEX document_chunks_embedding_idx;
    CREATE INDEX document_chunks_default_world_idx ON document_chunks_default (world_id);
    -- A promotion leaves the world's rows dead in the shared partition, and bitmap scans of the world
    -- index keep visiting them (a child of a promoted canon read 20,400 entries for 400 rows) until a
    -- vacuum: vacuum it after a few thousand dead rows, not after a fifth of the table.
    ALTER TABLE document_chunks_default SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000);
    FOREACH world IN ARRAY kept LOOP
        EXECUTE format(
            'ALTER TABLE document_chunks ATTACH PARTITION %I FOR VALUES IN (%L)',
            document_chunks_partition_name(world), world
        );
    END LOOP;
END
$$;

-- Ingestion (0005's role) promotes a world once its commit made it large enough; no one else.
REVOKE ALL ON FUNCTION promote_world_chunks(text) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kb_ingestion') THEN
        GRANT EXECUTE ON FUNCTION promote_world_chunks(text) TO kb_ingestion;
    END IF;
END
$$;
