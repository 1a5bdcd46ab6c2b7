-- Knowledge base schema, version 6: a player's erasure (docs/privacy.md).
--
-- An erasure finds a world's story events by their player_id attribute: an index keeps that one lookup
-- cheap on a long timeline. It deletes the events and the concept versions they set and removes concepts
-- only they introduced: the story-events writer (the role the erasure route connects as) gets DELETE on
-- those three tables, and nothing else changes.
CREATE INDEX story_events_player_idx ON story_events (world_id, (payload -> 'attributes' ->> 'player_id'));

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kb_story_events') THEN
        GRANT DELETE ON story_events, concept_versions, narrative_concepts TO kb_story_events;
    END IF;
END
$$;
