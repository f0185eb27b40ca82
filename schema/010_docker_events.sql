-- Igor's Docker image events (DOMAIN.md section 3): the event's source is
-- the registry account and its job the repository, as held events are
-- grouped; these are the tag and its digest (NULL when Igor read none).
-- Their number is the ledger's identity of (tag, digest): a 53-bit FNV-1a
-- hash of "tag\0digest" (event.h sg_docker_identity), so the ledger forwards
-- each (account, repository, tag, digest) at most once, as it does builds.
ALTER TABLE event ADD COLUMN tag TEXT;
ALTER TABLE event ADD COLUMN digest TEXT;
-- The tags the gate accepted, read when it starts (sg_store_ledger_docker):
-- the ledger keys on (tag, digest), and an event without a digest is judged
-- on its tag alone. Partial, so a build's insert does not touch it.
CREATE INDEX event_docker ON event(id) WHERE tag IS NOT NULL;
