-- Version 3: keys that stopped working (so a revoked key is told so rather than "invalid");
-- deleted runs (so a client syncing one again is refused with 410 instead of recreating it);
-- indexes for finding who still refers to a blob; and a tus upload's state in its row and
-- `upload_parts`, so any replica can continue it: bytes received (its parts are objects in
-- the store), the replica that received the last byte and ingests it, and when that began.
CREATE TABLE revoked_keys (hash TEXT PRIMARY KEY, account TEXT NOT NULL,
    created BIGINT NOT NULL, revoked BIGINT NOT NULL);
CREATE TABLE deleted_runs (id TEXT PRIMARY KEY, account TEXT NOT NULL, deleted BIGINT NOT NULL);
CREATE INDEX files_sha ON files (sha256);
CREATE INDEX blob_owners_sha ON blob_owners (sha256);
CREATE TABLE upload_parts (upload TEXT NOT NULL, start BIGINT NOT NULL, size BIGINT NOT NULL,
    name TEXT NOT NULL, PRIMARY KEY (upload, start));
ALTER TABLE uploads ADD COLUMN received BIGINT NOT NULL DEFAULT 0;
ALTER TABLE uploads ADD COLUMN holder TEXT;
ALTER TABLE uploads ADD COLUMN started BIGINT;
