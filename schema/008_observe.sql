-- Observe mode ([gate] mode = observe): the gate forwards every event as if
-- it were not there, and keeps what it would have done. would names the
-- state the gate would have given the event (suppressed, held or dropped);
-- NULL where the state it has is what it would have had, and on every
-- event journaled outside observe mode.
ALTER TABLE event ADD COLUMN would TEXT
    CHECK (would IS NULL OR would = 'suppressed' OR would = 'held' OR would = 'dropped');
