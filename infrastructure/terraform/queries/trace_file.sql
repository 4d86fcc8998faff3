-- Where a landed key was staged: its file_id, version, window and arrival; a file staged twice shows once per window
-- parameters: key (the key in the landing bucket), since (first dt to look in, yyyy-MM-dd)
SELECT DISTINCT
  file_id,
  bucket,
  "key",
  version_id,
  size,
  body_encoding,
  from_unixtime(event_time_ms / 1000e0) AS event_time,
  from_unixtime(firehose_arrival_ms / 1000e0) AS firehose_arrival,
  dt,
  hour,
  regexp_extract("$path", '([^/]+)\.json\.gz$', 1) AS window_id,
  "$path" AS staged_object
FROM "${database}"."${buffers_table}"
WHERE "key" = ?
  AND dt >= ?
ORDER BY firehose_arrival, staged_object
