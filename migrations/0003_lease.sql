-- The run lease: one holder at a time, with an epoch that every deletion
-- intent must match (fencing), so that a paused worker whose lease passed to
-- another cannot start a deletion when it wakes up.
CREATE TABLE lease (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    epoch      BIGINT NOT NULL,
    expires_at TEXT   NOT NULL
);
