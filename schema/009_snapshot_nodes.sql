-- The masters a snapshot of a Redis Cluster read: each one's address, the
-- slots it served (fixed for the whole snapshot, which fails if they move)
-- and the keys taken from it. A key came from the node whose slots hold the
-- key's slot (CRC16 of the key or its hash tag). No rows for one server.
CREATE TABLE snapshot_node (
    snapshot_id INTEGER NOT NULL REFERENCES snapshot(id) ON DELETE CASCADE,
    node        INTEGER NOT NULL,           -- 0.. in the order of the first slot
    address     TEXT    NOT NULL,           -- "10.0.0.7:6379"
    slots       TEXT    NOT NULL,           -- "0-5460" or "0-100,200-5460"
    keys        INTEGER NOT NULL,
    PRIMARY KEY (snapshot_id, node)
);
