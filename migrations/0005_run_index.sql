-- Runs are looked up by id (a certificate names the run that issued it, and
-- concurrent shards interleave their rows).
CREATE INDEX ledger_run_id ON ledger (run_id);
