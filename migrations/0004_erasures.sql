-- Subjects whose erasure was requested (by SHA-256 of their id), derived from
-- the ledger's erasure-requested rows; later runs erase their recordings that
-- appear again (restored from a backup, say).
CREATE TABLE erasure (
    request        TEXT   PRIMARY KEY,
    subject_sha256 TEXT   NOT NULL,
    seq            BIGINT NOT NULL
);
