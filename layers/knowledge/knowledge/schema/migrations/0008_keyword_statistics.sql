-- Knowledge base schema, version 8: BM25 statistics per world, and a content hash per chunk.
--
-- The keyword arm of hybrid search ranks a world's chunks by BM25 (knowledge.adapters.postgres.search):
-- it needs, per world, how often each term occurs in each chunk (tf), in how many chunks it occurs (df),
-- how many chunks there are (N) and their mean length. Plain PostgreSQL keeps them, no extension:
--
--   chunk_terms    one posting per (world, term, chunk): tf and the chunk's length, both in lexemes of
--                  its `search_tsv` (English stemming, stop words dropped). The primary key serves a query
--                  term's postings of one world in one index range (index-only: tf and length are INCLUDEd),
--                  and df is the number of postings in that range, so it can never disagree with them.
--   keyword_stats  per world: chunk_count (N) and term_total (the sum of chunk lengths; mean = total / N).
--
-- A statement trigger on document_chunks keeps both current for every insert (ingestion's COPY), delete
-- (a replaced version, `kb delete`, a document's cascade) and update, in the writer's transaction: a
-- search sees the statistics of exactly the chunks it can see.
--
-- content_hash is the SHA-256 of what was embedded for a chunk (heading path and text): a re-uploaded
-- document reuses the stored vector of every chunk whose hash and model did not change.

ALTER TABLE document_chunks ADD COLUMN content_hash text CHECK (content_hash ~ '^[0-9a-f]{64}$');
CREATE INDEX document_chunks_document_hash_idx ON document_chunks (document_id, content_hash);

CREATE TABLE keyword_stats (
    world_id text PRIMARY KEY REFERENCES worlds (world_id) ON DELETE CASCADE,
    chunk_count bigint NOT NULL DEFAULT 0 CHECK (chunk_count >= 0),
    term_total bigint NOT NULL DEFAULT 0 CHECK (term_total >= 0)
);

CREATE TABLE chunk_terms (
    world_id text NOT NULL,
    term text NOT NULL,
    chunk_id bigint NOT NULL,
    tf integer NOT NULL CHECK (tf > 0),
    chunk_length integer NOT NULL CHECK (chunk_length > 0),
    PRIMARY KEY (world_id, term, chunk_id) INCLUDE (tf, chunk_length)
);

CREATE FUNCTION chunk_length(tsv tsvector) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN (SELECT coalesce(sum(cardinality(positions)), 0)::integer FROM unnest(tsv));

-- Rows are written in key order, so concurrent writers of one world take their locks in the same order.
CREATE FUNCTION document_chunks_keyword_stats() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        DELETE FROM chunk_terms t
            USING old_chunks o, unnest(tsvector_to_array(o.search_tsv)) AS u(term)
            WHERE t.world_id = o.world_id AND t.term = u.term AND t.chunk_id = o.chunk_id;
        UPDATE keyword_stats s
            SET chunk_count = s.chunk_count - d.chunks, term_total = s.term_total - d.total
            FROM (SELECT world_id, count(*) AS chunks, coalesce(sum(chunk_length(search_tsv)), 0) AS total
                  FROM old_chunks GROUP BY world_id ORDER BY world_id) d
            WHERE s.world_id = d.world_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO keyword_stats AS s (world_id, chunk_count, term_total)
            SELECT world_id, count(*), coalesce(sum(chunk_length(search_tsv)), 0)
            FROM new_chunks GROUP BY world_id ORDER BY world_id
            ON CONFLICT (world_id) DO UPDATE
                SET chunk_count = s.chunk_count + EXCLUDED.chunk_count,
                    term_total = s.term_total + EXCLUDED.term_total;
        INSERT INTO chunk_terms (world_id, term, chunk_id, tf, chunk_length)
            SELECT n.world_id, u.lexeme, n.chunk_id, cardinality(u.positions), chunk_length(n.search_tsv)
            FROM new_chunks n, unnest(n.search_tsv) AS u
            ORDER BY 1, 2, 3;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER document_chunks_keyword_stats_insert AFTER INSERT ON document_chunks
    REFERENCING NEW TABLE AS new_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION document_chunks_keyword_stats();
CREATE TRIGGER document_chunks_keyword_stats_delete AFTER DELETE ON document_chunks
    REFERENCING OLD TABLE AS old_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION document_chunks_keyword_stats();
CREATE TRIGGER document_chunks_keyword_stats_update AFTER UPDATE ON document_chunks
    REFERENCING OLD TABLE AS old_chunks NEW TABLE AS new_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION document_chunks_keyword_stats();

-- The chunks already stored.
INSERT INTO keyword_stats (world_id, chunk_count, term_total)
    SELECT w.world_id, count(c.chunk_id), coalesce(sum(chunk_length(c.search_tsv)), 0)
    FROM worlds w LEFT JOIN document_chunks c ON c.world_id = w.world_id
    GROUP BY w.world_id;
INSERT INTO chunk_terms (world_id, term, chunk_id, tf, chunk_length)
    SELECT c.world_id, u.lexeme, c.chunk_id, cardinality(u.positions), chunk_length(c.search_tsv)
    FROM document_chunks c, unnest(c.search_tsv) AS u;

-- The writers of 0005: ingestion's chunk writes maintain the statistics (the trigger runs as the writer).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kb_ingestion') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON chunk_terms, keyword_stats TO kb_ingestion;
    END IF;
END
$$;
