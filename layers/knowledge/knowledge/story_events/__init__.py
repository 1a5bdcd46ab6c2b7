"""Story events: what game services report happened in a world, kept as the world's memory.

`model` is the event as the knowledge base holds it (limits, reason codes); `processing` decodes,
validates, scrubs and stores one SQS record (functions/process_story_events).
"""
