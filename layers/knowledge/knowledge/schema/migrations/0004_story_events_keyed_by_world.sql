-- Knowledge base schema, version 4: story events are keyed by (world, event id).
--
-- Each game service picks its own event ids, so the same id may name two events of two worlds: both are
-- stored. Within a world an id is still unique, which is what makes a redelivered event a duplicate.
ALTER TABLE story_events DROP CONSTRAINT story_events_pkey;
ALTER TABLE story_events ADD PRIMARY KEY (world_id, event_id);
