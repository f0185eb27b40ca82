-- The held queue (DESIGN.md, data model). An event's place in the delivery
-- queue is (qgen, id): inserts carry the current queue generation, and a
-- release of held events moves them to a new generation, so they queue behind
-- everything already queued and ahead of everything that arrives later,
-- without renumbering a single row. Rows not pending keep qgen 0.
ALTER TABLE event ADD COLUMN qgen INTEGER NOT NULL DEFAULT 0;
DROP INDEX event_open;
CREATE INDEX event_open ON event(state, qgen, id) WHERE state IN ('pending', 'held', 'dead');
-- the held summary groups by job: an index of what it reads, held rows only
CREATE INDEX event_held ON event(source, job, number) WHERE state = 'held';
