-- Guard and storm mode across replicas: a row per mode on (or lately on),
-- written by the replica that started or extended it, read by the others
-- when told (NOTIFY stormguard_mode, sent with a start or an operator's
-- off only: a NOTIFY takes a lock of the whole server at commit) and
-- every second. Times are epoch ms by the server's clock (each replica
-- converts its own, measured against the server's: store_pg_int.h).
CREATE TABLE gate_mode (
    scope    TEXT   PRIMARY KEY,   -- '': guard mode; '*': a storm of every source; else the source in storm
    since_ms BIGINT NOT NULL,
    until_ms BIGINT NOT NULL,      -- on until then (or until off_at)
    reason   TEXT   NOT NULL,
    replica  TEXT   NOT NULL,      -- who wrote it last
    off_at   BIGINT,               -- turned off by an operator then
    wipe_at  BIGINT,               -- guard mode: the last wipe seen, when one caused it
    expect_until BIGINT            -- guard mode: a flush announced, its wipe expected until then
);

-- Only one replica watches Redis and takes the periodic snapshots: the
-- holder of the session advisory lock 7301163522303.
