-- Snapshots of a poller's Redis keys and the build index decoded from them
-- (DESIGN.md, data model). Payloads are DUMP output; expiry is absolute.

-- AUTOINCREMENT: an id printed in output or the audit log never comes to
-- mean another snapshot after pruning.
CREATE TABLE snapshot (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    taken_at      INTEGER NOT NULL,          -- epoch ms
    reason        TEXT    NOT NULL,
    redis         TEXT    NOT NULL,          -- URL without password
    redis_version TEXT,
    profile       TEXT    NOT NULL,
    selection     TEXT    NOT NULL,          -- patterns, or '*'
    db            INTEGER NOT NULL,          -- database taken, -1 for several
    key_count     INTEGER NOT NULL DEFAULT 0,
    bytes         INTEGER NOT NULL DEFAULT 0,
    vanished      INTEGER NOT NULL DEFAULT 0, -- keys gone between SCAN and DUMP
    seconds       REAL    NOT NULL DEFAULT 0,
    state         TEXT    NOT NULL CHECK (state IN ('complete', 'partial', 'suspect'))
);

-- id = snapshot_id << 32 | sequence: a snapshot's keys are one range of the
-- table's own b-tree, appended in order, so neither an index nor a foreign
-- key check costs anything per key (a snapshot can hold millions), and a
-- snapshot's keys are read or deleted as one range scan.
CREATE TABLE snapshot_key (
    id           INTEGER PRIMARY KEY,
    snapshot_id  INTEGER NOT NULL,
    db           INTEGER NOT NULL,
    key          BLOB    NOT NULL,           -- the type is the payload's first byte
    expire_at_ms INTEGER,                    -- NULL: no expiry
    payload      BLOB    NOT NULL
);

-- Build index decoded by the profile: per source (Jenkins/Travis master) and
-- job, the Jenkins cursor and the Travis/GitLab last completed/running numbers.
CREATE TABLE build_index (
    snapshot_id    INTEGER NOT NULL REFERENCES snapshot(id) ON DELETE CASCADE,
    source         TEXT    NOT NULL,
    job            TEXT    NOT NULL,
    cursor_ms      INTEGER,
    last_completed INTEGER,
    last_running   INTEGER,
    PRIMARY KEY (snapshot_id, source, job)
) WITHOUT ROWID;

-- Jenkins builds Igor marked POSTED.
CREATE TABLE posted (
    snapshot_id INTEGER NOT NULL REFERENCES snapshot(id) ON DELETE CASCADE,
    source      TEXT    NOT NULL,
    job         TEXT    NOT NULL,
    number      INTEGER NOT NULL,
    PRIMARY KEY (snapshot_id, source, job, number)
) WITHOUT ROWID;

CREATE TABLE docker_tag (
    snapshot_id INTEGER NOT NULL REFERENCES snapshot(id) ON DELETE CASCADE,
    account     TEXT    NOT NULL,
    repository  TEXT    NOT NULL,
    tag         TEXT    NOT NULL,
    digest      TEXT,
    PRIMARY KEY (snapshot_id, account, repository, tag)
) WITHOUT ROWID;

CREATE TABLE audit (
    id     INTEGER PRIMARY KEY,
    at     INTEGER NOT NULL,                 -- epoch ms
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    detail TEXT
);
