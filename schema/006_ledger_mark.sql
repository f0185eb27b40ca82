-- The journal writes the ledger in bulk (journal.c): the builds it accepted
-- over the last second or so are in the event table and in the writer's
-- memory, then go into the ledger together, sorted, in one transaction. One
-- ledger row a commit cost a b-tree page per event, since consecutive events
-- belong to different jobs; that page was the biggest part of a journaled
-- event's WAL writes.
--
-- upto: every event up to this id that the ledger should hold (kind new or
-- unknown) is in it. A crash leaves the builds of later events out; opening
-- the journal adds them from the event table first.
CREATE TABLE ledger_mark (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    upto INTEGER NOT NULL
);
INSERT INTO ledger_mark(id, upto) SELECT 1, coalesce(max(id), 0) FROM event;
