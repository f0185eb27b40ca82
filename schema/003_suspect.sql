-- Suspect snapshots (DESIGN.md data model): a profile snapshot that finds far
-- fewer of the profile's keys than the last good snapshot of the same server,
-- database and profile pattern was probably taken after a wipe. It is kept
-- (state 'suspect') but is never the index baseline, never what pruning keeps
-- as the last good one, and never what `restore latest` picks.

-- The profile's SCAN pattern ('igor:*'); NULL for a snapshot without profile.
ALTER TABLE snapshot ADD COLUMN profile_pattern TEXT;
-- Keys of the snapshot matching profile_pattern (--match extras excluded);
-- NULL when not counted.
ALTER TABLE snapshot ADD COLUMN profile_keys INTEGER;
-- Why the snapshot is suspect ("found 3 igor keys, the last good snapshot 41
-- had 2000 (below 50%)"); NULL otherwise.
ALTER TABLE snapshot ADD COLUMN suspect_reason TEXT;

-- Older profile snapshots whose selection is one 'X:*' pattern hold only keys
-- under X, so their key count is the count for pattern 'X:*': they serve as
-- the comparison for the first snapshot after the upgrade. Others stay NULL
-- (not counted) and are never compared against.
UPDATE snapshot SET profile_pattern = selection, profile_keys = key_count
 WHERE profile != 'none' AND instr(selection, ' ') = 0 AND selection GLOB '?*:[*]';
