-- Version 2 on SQLite gives blobs stored before ownership was tracked to their runs'
-- accounts. A PostgreSQL database never predates ownership; the same statement keeps both
-- backends' version lists in step and holds nothing back.
INSERT INTO blob_owners (account, sha256) SELECT DISTINCT runs.account, files.sha256
    FROM files JOIN runs ON runs.id = files.run_id ON CONFLICT DO NOTHING;
