-- Knowledge base schema, version 14: small worlds' searches with plans kept per session.
--
-- A world without a partition of its own (fewer than document_chunks_own_partition_threshold() chunks,
-- migration 0010) lives in the shared partition. Its searches were one statement over document_chunks,
-- which PostgreSQL planned again on every call: a custom plan prunes the partitions, and a generic plan of
-- the partitioned table locks every partition and index on each execution (slower once partitions are
-- many, and out of lock slots at thousands). Planning was about half of a hybrid search's time
-- (docs/benchmarks.md, section 8). These functions run the same statements with the shared partition
-- named directly: PL/pgSQL keeps its generic plan for the session, on every supported PostgreSQL version,
-- and it locks one table. knowledge.adapters.postgres.search calls them first for a world searched alone
-- with no filters; a world with a partition of its own finds no rows here and runs the plain statement.
--
-- Each body is search.py's statement for one world (`shared_partition_body`), its parameters by position;
-- tests/functional/test_shared_search.py keeps them equal, so a change to one needs a migration here.
-- Output columns (shared_search_hit): chunk, score, similarity, document key and title, heading, text,
-- offsets, and the world's parent.

-- A row of either function; the parent tells the caller a world with one is searched over its lineage.
CREATE TYPE shared_search_hit AS (
    chunk_id bigint, score double precision, similarity double precision, document_key text, title text,
    heading text, content text, start_offset integer, end_offset integer, parent_world_id text
);

CREATE FUNCTION search_shared_chunks(world text, q vector, k integer)
    RETURNS SETOF shared_search_hit
    LANGUAGE plpgsql STABLE
    SET plan_cache_mode = force_generic_plan SET search_path = public, pg_temp AS $$
BEGIN
    RETURN QUERY
        SELECT h.chunk_id, h.similarity, h.similarity, d.s3_key, d.title, h.heading, h.content,
        h.start_offset, h.end_offset, (SELECT w.parent_world_id FROM worlds w WHERE w.world_id = $1)
        FROM (SELECT c.chunk_id, c.document_id, c.heading, c.content, c.start_offset, c.end_offset, 1 -
        (c.embedding <=> $2) AS similarity FROM document_chunks_default c WHERE c.world_id = $1 ORDER BY
        c.embedding <=> $2 LIMIT $3) h JOIN narrative_documents d ON d.document_id = h.document_id ORDER
        BY h.similarity DESC, h.chunk_id;
END
$$;

CREATE FUNCTION search_shared_chunks_hybrid(world text, q vector, k integer, keywords text, depth integer,
                                            weight double precision, sentence_weight double precision)
    RETURNS SETOF shared_search_hit
    LANGUAGE plpgsql STABLE
    SET plan_cache_mode = force_generic_plan SET search_path = public, pg_temp AS $$
BEGIN
    RETURN QUERY
        WITH vec AS ( SELECT c.chunk_id, 1 - (c.embedding <=> $2) AS similarity FROM
        document_chunks_default c WHERE c.world_id = $1 ORDER BY c.embedding <=> $2 LIMIT $5), terms AS
        (SELECT DISTINCT u.term FROM unnest(tsvector_to_array(to_tsvector('english', $4))) AS u(term)),
        stats AS (SELECT chunk_count::float8 AS n, term_total::float8 / chunk_count AS avgdl FROM
        keyword_stats WHERE world_id = $1 AND chunk_count > 0 AND term_total > 0), postings AS (SELECT
        t.term, p.chunk_id, p.tf, p.chunk_length, count(*) OVER (PARTITION BY t.term) AS df FROM terms t
        CROSS JOIN LATERAL (SELECT p.chunk_id, p.tf, p.chunk_length FROM chunk_terms p WHERE p.world_id
        = $1 AND p.term = t.term OFFSET 0) p), kw AS (SELECT p.chunk_id, sum(ln(1 + (s.n - p.df + 0.5) /
        (p.df + 0.5)) * p.tf * (1.2 + 1) / (p.tf + 1.2 * (1 - 0.75 + 0.75 * p.chunk_length / s.avgdl)))
        AS score FROM postings p CROSS JOIN stats s GROUP BY p.chunk_id ORDER BY score DESC, p.chunk_id
        LIMIT $5), fused AS ( SELECT chunk_id, (1 - $6) * CASE WHEN vec.similarity IS NULL THEN 0 ELSE
        coalesce( (vec.similarity - min(vec.similarity) OVER ()) / nullif(max(vec.similarity) OVER () -
        min(vec.similarity) OVER (), 0), 1) END + $6 * coalesce(kw.score / nullif(max(kw.score) OVER (),
        0), 0) AS score FROM vec FULL JOIN kw USING (chunk_id) ORDER BY score DESC, chunk_id LIMIT
        greatest($3, 10)), idf AS (SELECT DISTINCT ON (p.term) p.term, ln(1 + (s.n - p.df + 0.5) / (p.df
        + 0.5)) AS idf FROM postings p CROSS JOIN stats s), head AS (SELECT f.chunk_id FROM fused f
        ORDER BY f.score DESC, f.chunk_id LIMIT 10), coverage AS (SELECT per_sentence.chunk_id,
        max(per_sentence.idf) / (SELECT sum(idf) FROM idf) AS share FROM (SELECT head.chunk_id,
        sentence.n, sum(i.idf) AS idf FROM head CROSS JOIN idf i CROSS JOIN LATERAL (SELECT ct.sentences
        FROM chunk_terms ct WHERE ct.world_id = $1 AND ct.term = i.term AND ct.chunk_id = head.chunk_id
        LIMIT 1) ct CROSS JOIN LATERAL unnest(ct.sentences) AS sentence (n) GROUP BY head.chunk_id,
        sentence.n) per_sentence GROUP BY per_sentence.chunk_id), ranked AS (SELECT f.chunk_id, (1 - $7)
        * f.score + $7 * coalesce(cv.share, 0) AS score FROM fused f LEFT JOIN coverage cv USING
        (chunk_id) ORDER BY score DESC, f.chunk_id LIMIT $3) SELECT h.chunk_id, h.score, h.similarity,
        d.s3_key, d.title, h.heading, h.content, h.start_offset, h.end_offset, (SELECT w.parent_world_id
        FROM worlds w WHERE w.world_id = $1) FROM (SELECT c.chunk_id, c.document_id, c.heading,
        c.content, c.start_offset, c.end_offset, r.score, 1 - (c.embedding <=> $2) AS similarity FROM
        ranked r JOIN document_chunks_default c ON c.world_id = $1 AND c.chunk_id = r.chunk_id) h JOIN
        narrative_documents d ON d.document_id = h.document_id ORDER BY h.score DESC, h.chunk_id;
END
$$;
