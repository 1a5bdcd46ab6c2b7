-- Knowledge base schema, version 13: which sentences of a chunk hold each of its terms.
--
-- Hybrid search reorders the head of its fused list by how much of the query one single sentence of a
-- chunk holds (knowledge.adapters.postgres.search, "sentence stage"): a fact stated in one sentence then
-- outranks a chunk that only scatters the query's words. A posting now lists the ordinals (1-based) of
-- the sentences of the chunk's text that hold its term, so a search reads them with the posting and never
-- parses text. Heading terms are in no sentence (NULL). Sentences end as knowledge.reranking's
-- split_sentences ends them: at . ! ? or an ellipsis, with any closing quotes or brackets, before white
-- space.

CREATE FUNCTION sentence_terms(content text) RETURNS TABLE (term text, sentences smallint[])
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
BEGIN ATOMIC
    SELECT u.term, array_agg(least(s.n, 32767)::smallint ORDER BY s.n)
      FROM regexp_split_to_table(content, '[.!?…]["''”’)\]]*\s+') WITH ORDINALITY AS s (sentence, n)
      CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector('english'::regconfig, s.sentence))) AS u (term)
     GROUP BY u.term;
END;

ALTER TABLE chunk_terms ADD COLUMN sentences smallint[];

-- 0008's trigger, the postings now written with their sentences.
CREATE OR REPLACE FUNCTION document_chunks_keyword_stats() RETURNS trigger
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
        -- Materialized: each chunk's text is split and parsed once, not once per posting.
        WITH st AS MATERIALIZED (
            SELECT c.world_id, c.chunk_id, t.term, t.sentences
            FROM new_chunks c CROSS JOIN LATERAL sentence_terms(c.content) AS t)
        INSERT INTO chunk_terms (world_id, term, chunk_id, tf, chunk_length, sentences)
            SELECT n.world_id, u.lexeme, n.chunk_id, cardinality(u.positions), chunk_length(n.search_tsv),
                   st.sentences
            FROM new_chunks n CROSS JOIN LATERAL unnest(n.search_tsv) AS u
            LEFT JOIN st ON st.world_id = n.world_id AND st.chunk_id = n.chunk_id AND st.term = u.lexeme
            ORDER BY 1, 2, 3;
    END IF;
    RETURN NULL;
END
$$;

-- The postings already stored, a world at a time. Rewriting every posting costs about 1.3 ms a chunk, so a
-- base of over 100,000 chunks is left to the runbook (docs/runbooks/database.md, "Maintenance: sentences
-- of postings written before migration 0013"), which fills it world by world without the migration's
-- statement timeout. Until a world is filled its searches rank as before the sentence stage.
CREATE FUNCTION fill_sentence_postings(world text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    filled bigint;
BEGIN
    WITH st AS MATERIALIZED (
        SELECT c.world_id, c.chunk_id, t.term, t.sentences
        FROM document_chunks c CROSS JOIN LATERAL sentence_terms(c.content) AS t
        WHERE c.world_id = world)
    UPDATE chunk_terms p SET sentences = st.sentences
        FROM st WHERE p.world_id = st.world_id AND p.chunk_id = st.chunk_id AND p.term = st.term
        AND p.sentences IS DISTINCT FROM st.sentences;
    GET DIAGNOSTICS filled = ROW_COUNT;
    RETURN filled;
END
$$;
REVOKE EXECUTE ON FUNCTION fill_sentence_postings(text) FROM PUBLIC;

DO $$
BEGIN
    IF (SELECT count(*) FROM document_chunks) <= 100000 THEN
        PERFORM fill_sentence_postings(w.world_id) FROM worlds w;
    END IF;
END
$$;
