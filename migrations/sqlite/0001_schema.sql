-- The schema as it stood before versioned migrations. IF NOT EXISTS: a database made by the
-- older code, which created these tables at every start, is adopted as it is.
CREATE TABLE IF NOT EXISTS api_keys (hash TEXT PRIMARY KEY, account TEXT NOT NULL,
    created BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, account TEXT NOT NULL,
    project TEXT NOT NULL, entity TEXT, name TEXT, tags TEXT NOT NULL, notes TEXT,
    state TEXT NOT NULL, exit_code BIGINT, config TEXT NOT NULL, summary TEXT NOT NULL,
    created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL, next_seq BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_account ON runs (account, created_ms);
CREATE TABLE IF NOT EXISTS history (run_id TEXT NOT NULL, seq BIGINT NOT NULL,
    step BIGINT NOT NULL, ts_ms BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq));
CREATE INDEX IF NOT EXISTS history_step ON history (run_id, step);
CREATE TABLE IF NOT EXISTS system (run_id TEXT NOT NULL, seq BIGINT NOT NULL,
    step BIGINT NOT NULL, ts_ms BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq));
CREATE INDEX IF NOT EXISTS system_step ON system (run_id, step);
CREATE TABLE IF NOT EXISTS files (run_id TEXT NOT NULL, path TEXT NOT NULL,
    sha256 TEXT NOT NULL, size BIGINT NOT NULL, PRIMARY KEY (run_id, path));
CREATE TABLE IF NOT EXISTS bundles (sha256 TEXT PRIMARY KEY, run_id TEXT NOT NULL,
    rows_added BIGINT NOT NULL, created BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (id TEXT PRIMARY KEY, account TEXT NOT NULL,
    length BIGINT NOT NULL, sha256 TEXT, metadata TEXT, created BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS blob_owners (account TEXT NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (account, sha256));
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL,
    until_ms BIGINT NOT NULL);
