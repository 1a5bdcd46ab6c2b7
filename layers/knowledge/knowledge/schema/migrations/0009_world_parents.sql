-- Knowledge base schema, version 9: a world may name a parent world (a canon and the worlds that diverge
-- from it; docs/worlds.md).
--
-- A world reads its own rows and its ancestors': a child's document shadows its parent's document of the
-- same name (the key after incoming/<world>/), a child's concept the parent's concept of the same name.
-- Writes stay in the world they were made in, and story events are never inherited.
--
-- The parent graph is a forest: no world is its own ancestor, and a lineage (a world and its ancestors)
-- holds at most 8 worlds, so a read touches at most 8 partitions of document_chunks. A trigger refuses a
-- parent that breaks either rule, with SQLSTATE KBW01 (a cycle) or KBW02 (too deep).

ALTER TABLE worlds
    ADD COLUMN parent_world_id text REFERENCES worlds (world_id),
    ADD CONSTRAINT worlds_not_own_parent CHECK (parent_world_id <> world_id);

-- Children of a world: the depth check below, and the foreign key's check when a world is deleted.
CREATE INDEX worlds_parent_idx ON worlds (parent_world_id) WHERE parent_world_id IS NOT NULL;

CREATE FUNCTION worlds_check_parent() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    above integer;    -- the new parent and its ancestors
    below integer;    -- generations under this world
    cycle boolean;
BEGIN
    IF NEW.parent_world_id IS NULL THEN
        RETURN NEW;
    END IF;
    -- Two concurrent changes could each pass the check alone and close a cycle together: parents change
    -- one at a time. Each statement below then sees the other's committed change.
    PERFORM pg_advisory_xact_lock(hashtextextended('worlds.parent_world_id', 0));
    WITH RECURSIVE up (world_id, depth) AS (
        SELECT NEW.parent_world_id, 1
        UNION ALL
        SELECT w.parent_world_id, up.depth + 1
        FROM up JOIN worlds w ON w.world_id = up.world_id
        WHERE w.parent_world_id IS NOT NULL AND up.world_id <> NEW.world_id AND up.depth < 16
    )
    SELECT count(*), coalesce(bool_or(world_id = NEW.world_id), false) INTO above, cycle FROM up;
    IF cycle THEN
        RAISE EXCEPTION 'world % cannot have parent %: % is already one of its descendants',
            NEW.world_id, NEW.parent_world_id, NEW.parent_world_id
            USING ERRCODE = 'KBW01';
    END IF;
    WITH RECURSIVE down (world_id, depth) AS (
        SELECT NEW.world_id, 0
        UNION ALL
        SELECT w.world_id, down.depth + 1
        FROM down JOIN worlds w ON w.parent_world_id = down.world_id
        WHERE down.depth < 16
    )
    SELECT max(depth) INTO below FROM down;
    IF above + 1 + below > 8 THEN
        RAISE EXCEPTION 'world % cannot have parent %: a lineage holds at most 8 worlds, this one would hold %',
            NEW.world_id, NEW.parent_world_id, above + 1 + below
            USING ERRCODE = 'KBW02';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER worlds_parent_check BEFORE INSERT OR UPDATE OF parent_world_id ON worlds
    FOR EACH ROW EXECUTE FUNCTION worlds_check_parent();

-- The worlds a read of `world` covers, nearest first (the world itself, its parent, ...); NULL for a
-- world the knowledge base does not hold.
CREATE FUNCTION world_lineage(world text) RETURNS text[]
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN (
        WITH RECURSIVE up (world_id, parent_world_id, depth) AS (
            SELECT w.world_id, w.parent_world_id, 1 FROM worlds w WHERE w.world_id = world
            UNION ALL
            SELECT w.world_id, w.parent_world_id, up.depth + 1
            FROM up JOIN worlds w ON w.world_id = up.parent_world_id
            WHERE up.depth < 8
        )
        SELECT array_agg(up.world_id ORDER BY up.depth) FROM up
    );

-- A document's name within its world: its key after incoming/<world>/ (the whole key otherwise). A
-- child's document shadows its ancestors' documents of the same name.
CREATE FUNCTION document_name(world text, s3_key text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN starts_with(s3_key, 'incoming/' || world || '/') THEN substr(s3_key, length(world) + 11)
                ELSE s3_key END;

-- The API's writing function (kb_story_events, docs/privacy.md) also creates worlds and sets their
-- parents (PUT /worlds/{world_id}); ingestion (kb_ingestion) already writes worlds.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kb_story_events') THEN
        GRANT INSERT, UPDATE (name, parent_world_id) ON worlds TO kb_story_events;
    END IF;
END
$$;
