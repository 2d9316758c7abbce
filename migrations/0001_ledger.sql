-- The hash-chained, append-only ledger. Portable between SQLite and PostgreSQL.
CREATE TABLE ledger (
    seq        BIGINT PRIMARY KEY,
    kind       TEXT   NOT NULL,
    run_id     TEXT   NOT NULL,
    at         TEXT   NOT NULL,
    store      TEXT,
    object_key TEXT,
    ref_seq    BIGINT,
    body       TEXT   NOT NULL,
    prev_hash  TEXT   NOT NULL,
    hash       TEXT   NOT NULL
);

CREATE INDEX ledger_kind_seq ON ledger (kind, seq);
CREATE INDEX ledger_ref_seq ON ledger (ref_seq);

-- Intents without an outcome yet: derived state for crash recovery, not evidence.
CREATE TABLE pending_intent (
    seq BIGINT PRIMARY KEY
);
