-- The pending events without a job (pass-through) that no replica claims:
-- the journal claims them as it writes them, so only a replica's lapsed
-- lease leaves one here. A claim's look job by job (pg_replicas.c) takes
-- them from this index, nearly always empty, where a look through
-- event_unclaimed for them walked the whole backlog.
CREATE INDEX event_unclaimed_bare ON event(qgen, id)
    WHERE state = 'pending' AND claimed_by IS NULL AND (source IS NULL OR job IS NULL);
