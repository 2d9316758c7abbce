-- Legal holds, derived from the ledger's hold-placed / hold-released rows
-- (which are the evidence; `ledger verify` checks this table against them).
CREATE TABLE hold (
    case_id      TEXT   PRIMARY KEY,
    placed_seq   BIGINT NOT NULL,
    released_seq BIGINT,
    body         TEXT   NOT NULL
);
