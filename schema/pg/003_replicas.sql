-- Several gates on one store (replicas). Each running gate is a row of
-- replica, its lease renewed every second by the server's clock; a pending
-- event is delivered by the replica named in its claimed_by. A replica
-- claims only the head of each job's pending queue (no earlier pending
-- event of the job claimed by another or by none), so one job's events go
-- out in order whichever replica journaled them. Claims of a replica whose
-- lease ran out go back to none, for the others to take.
CREATE TABLE replica (
    name        TEXT   PRIMARY KEY,               -- PID@HOST#start, unique per run
    started_at  BIGINT NOT NULL,                  -- epoch ms, the server's clock
    lease_until BIGINT NOT NULL                   -- epoch ms, the server's clock
);

ALTER TABLE event ADD COLUMN claimed_by TEXT;
CREATE INDEX event_unclaimed ON event(qgen, id) WHERE state = 'pending' AND claimed_by IS NULL;
CREATE INDEX event_claimed ON event(claimed_by) WHERE state = 'pending' AND claimed_by IS NOT NULL;
CREATE INDEX event_lane ON event(source, job, qgen, id) WHERE state = 'pending';
