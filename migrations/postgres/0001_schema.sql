-- The schema in PostgreSQL's types: counters, sizes and Unix-millisecond times are BIGINT
-- (the API speaks Unix ms, and sqlx's Any driver maps BIGINT to i64 on both backends); JSON
-- documents and hex digests are TEXT (UTF-8, validated on the way in).
CREATE TABLE api_keys (hash TEXT PRIMARY KEY, account TEXT NOT NULL, created BIGINT NOT NULL);
CREATE TABLE runs (id TEXT PRIMARY KEY, account TEXT NOT NULL, project TEXT NOT NULL,
    entity TEXT, name TEXT, tags TEXT NOT NULL, notes TEXT, state TEXT NOT NULL,
    exit_code BIGINT, config TEXT NOT NULL, summary TEXT NOT NULL,
    created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL, next_seq BIGINT NOT NULL);
CREATE INDEX runs_account ON runs (account, created_ms);
CREATE TABLE history (run_id TEXT NOT NULL, seq BIGINT NOT NULL, step BIGINT NOT NULL,
    ts_ms BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq));
CREATE INDEX history_step ON history (run_id, step);
CREATE TABLE system (run_id TEXT NOT NULL, seq BIGINT NOT NULL, step BIGINT NOT NULL,
    ts_ms BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq));
CREATE INDEX system_step ON system (run_id, step);
CREATE TABLE files (run_id TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL,
    size BIGINT NOT NULL, PRIMARY KEY (run_id, path));
CREATE TABLE bundles (sha256 TEXT PRIMARY KEY, run_id TEXT NOT NULL,
    rows_added BIGINT NOT NULL, created BIGINT NOT NULL);
CREATE TABLE uploads (id TEXT PRIMARY KEY, account TEXT NOT NULL, length BIGINT NOT NULL,
    sha256 TEXT, metadata TEXT, created BIGINT NOT NULL);
CREATE TABLE blob_owners (account TEXT NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (account, sha256));
CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until_ms BIGINT NOT NULL);
