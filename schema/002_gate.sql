-- The gate's journal, its ledger of accepted builds, wipe/storm episodes
-- (DESIGN.md, data model).

-- Every request the gate answered 2xx, written before the answer.
CREATE TABLE event (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at     INTEGER NOT NULL,            -- epoch ms
    source          TEXT,                        -- NULL for pass-through
    job             TEXT,
    number          INTEGER,
    build_ts        INTEGER,                     -- build start, epoch ms
    kind            TEXT    NOT NULL CHECK (kind IN ('passthrough', 'new', 'replay', 'unknown')),
    reason          TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'forwarded', 'suppressed',
                        'held', 'released', 'dropped', 'superseded', 'dead')),
    method          TEXT    NOT NULL,
    path            TEXT    NOT NULL,            -- with the query string
    headers         TEXT    NOT NULL,            -- forwarded headers, "name: value\n" lines
    body            BLOB    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,                     -- epoch ms, while pending
    last_error      TEXT,
    done_at         INTEGER                      -- forwarded, suppressed or dead at
);
-- Only events still waiting for something are indexed by state: every event
-- passes through pending, and a full (state, id) index would cost a b-tree
-- delete and insert per delivery for rows nobody looks up by state again.
-- Listing forwarded or suppressed events walks the table newest first.
CREATE INDEX event_open ON event(state, id) WHERE state IN ('pending', 'held', 'dead');

-- Every build the gate accepted for forwarding, ever (pruned by age): its own
-- memory, which survives a Redis wipe. A build is forwarded at most once.
CREATE TABLE ledger (
    source      TEXT    NOT NULL,
    job         TEXT    NOT NULL,
    number      INTEGER NOT NULL,
    accepted_at INTEGER NOT NULL,                -- epoch ms
    event_id    INTEGER NOT NULL,
    PRIMARY KEY (source, job, number)
) WITHOUT ROWID;

CREATE TABLE episode (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    cause      TEXT    NOT NULL,
    detail     TEXT
);
