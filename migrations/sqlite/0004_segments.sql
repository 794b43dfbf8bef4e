-- Version 4: the catalog of history and system segments, immutable Parquet objects in the
-- store: one row per object with its seq and step range, row count, size and per-key stats
-- (TEXT JSON), and its coarse M4 pre-aggregate object if it has one. The `history` and
-- `system` tables of earlier versions only hold rows until they are moved into segments at
-- start.
CREATE TABLE segments (object TEXT PRIMARY KEY, agg TEXT, run_id TEXT NOT NULL,
    kind TEXT NOT NULL, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL,
    min_step BIGINT NOT NULL, max_step BIGINT NOT NULL, row_count BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL, stats TEXT NOT NULL, created BIGINT NOT NULL);
CREATE INDEX segments_run ON segments (run_id, kind, min_step);
