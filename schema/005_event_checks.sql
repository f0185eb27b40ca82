-- The event table's CHECK constraints and the event_open index's condition
-- were written as IN lists. SQLite evaluates `x IN ('a', 'b', 'c')` in a
-- constraint or an index condition by building a temporary index each time a
-- statement runs: three for every journaled event, and again for its state
-- update. Measured on this schema, an event's insert and update took 32 us
-- with them and 13 us with the same conditions written as comparisons. Same
-- meaning, as ORs; the table is rebuilt (SQLite cannot change a CHECK in
-- place) with every row, id and the AUTOINCREMENT counter kept.
--
-- event_open now serves the delivery queue (pending, in qgen, id order) and
-- the dead: no query could use its IN-list condition, so the queue was read
-- by a scan and a sort. Held events stay out of it: the held queue's
-- statements read event_held, by job, and a held row in event_open as well
-- made the planner pick that instead (every held row per statement).
CREATE TABLE event_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at     INTEGER NOT NULL,            -- epoch ms
    source          TEXT,                        -- NULL for pass-through
    job             TEXT,
    number          INTEGER,
    build_ts        INTEGER,                     -- build start, epoch ms
    kind            TEXT    NOT NULL CHECK (kind = 'passthrough' OR kind = 'new' OR
                                            kind = 'replay' OR kind = 'unknown'),
    reason          TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state = 'pending' OR state = 'forwarded' OR
                                            state = 'suppressed' OR state = 'held' OR
                                            state = 'released' OR state = 'dropped' OR
                                            state = 'superseded' OR state = 'dead'),
    method          TEXT    NOT NULL,
    path            TEXT    NOT NULL,            -- with the query string
    headers         TEXT    NOT NULL,            -- forwarded headers, "name: value\n" lines
    body            BLOB    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,                     -- epoch ms, while pending
    last_error      TEXT,
    done_at         INTEGER,                     -- forwarded, suppressed or dead at
    qgen            INTEGER NOT NULL DEFAULT 0   -- queue generation (004_held.sql)
);

INSERT INTO event_new (id, received_at, source, job, number, build_ts, kind, reason, state,
                       method, path, headers, body, attempts, next_attempt_at, last_error,
                       done_at, qgen)
SELECT id, received_at, source, job, number, build_ts, kind, reason, state, method, path,
       headers, body, attempts, next_attempt_at, last_error, done_at, qgen
FROM event;

-- ids are never reused, even those of pruned events above the highest kept
INSERT INTO sqlite_sequence (name, seq)
SELECT 'event_new', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'event_new');
UPDATE sqlite_sequence
SET seq = max(seq, coalesce((SELECT max(seq) FROM sqlite_sequence WHERE name = 'event'), 0))
WHERE name = 'event_new';

DROP TABLE event;
ALTER TABLE event_new RENAME TO event;

CREATE INDEX event_open ON event(state, qgen, id) WHERE state = 'pending' OR state = 'dead';
CREATE INDEX event_held ON event(source, job, number) WHERE state = 'held';
