-- One row per report. `fence` is the highest fencing token that has written the row:
-- a writer must carry a token at least that high, so a holder whose lock has passed to
-- someone else (a newer, higher token) can no longer write.
CREATE TABLE IF NOT EXISTS reports (
  id      text    PRIMARY KEY,
  runs    integer NOT NULL DEFAULT 0,  -- how many runs have updated the report
  last_by text,                        -- who wrote it last
  fence   bigint  NOT NULL DEFAULT 0
);

-- The fenced write (job.mjs, --mode fenced). `<=`, not `<`: one holder may write several
-- times with its one token. 0 rows updated means a newer holder has written: stop.
--
--   UPDATE reports SET runs = $2, last_by = $3, fence = $4
--    WHERE id = $1 AND fence <= $4;
