-- The posted markers of a snapshot, one row per job instead of one per
-- build: numbers is a JSON array of the job's posted build numbers
-- ([117,118,119]). Igor keeps a marker for every build it posted (DOMAIN.md
-- section 2): 100,000 jobs with 20 markers each were 2,000,000 rows for every
-- periodic snapshot, each a b-tree insert with its job's names. The view
-- "posted" reads them as the rows they were.
CREATE TABLE posted_builds (
    snapshot_id INTEGER NOT NULL REFERENCES snapshot(id) ON DELETE CASCADE,
    source      TEXT    NOT NULL,
    job         TEXT    NOT NULL,
    numbers     TEXT    NOT NULL,
    PRIMARY KEY (snapshot_id, source, job)
) WITHOUT ROWID;

INSERT INTO posted_builds(snapshot_id, source, job, numbers)
    SELECT snapshot_id, source, job, json_group_array(number)
    FROM (SELECT snapshot_id, source, job, number FROM posted
          ORDER BY snapshot_id, source, job, number)
    GROUP BY snapshot_id, source, job;

DROP TABLE posted;

CREATE VIEW posted(snapshot_id, source, job, number) AS
    SELECT p.snapshot_id, p.source, p.job, j.value
    FROM posted_builds p, json_each(p.numbers) j;
