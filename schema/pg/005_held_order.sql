-- The oldest held event, which every replica reads every 5 s: event_held
-- orders by job, so the read went through the primary key from the first
-- event and filtered, a scan of the whole table whenever nothing (or only
-- recent events) was held.
CREATE INDEX event_held_order ON event(id) WHERE state = 'held';
