-- Version 5: a second, coarser M4 pre-aggregate per segment (first/last/min/max of every 4,096
-- values of a key, beside the 256-value one in `agg`), so a chart of a 10 M-step run reads
-- about as many rows as one of a 1 M-step run. Segments made before it have none (NULL) and
-- are read at the fine resolution.
ALTER TABLE segments ADD COLUMN agg2 TEXT;
