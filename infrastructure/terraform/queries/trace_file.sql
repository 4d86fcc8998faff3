-- Where a landed key was staged: its file_id, version, window and arrival (parameters: key, first dt yyyy-MM-dd)
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
  "$path" AS staged_object
FROM "${database}"."${buffers_table}"
WHERE "key" = ?
  AND dt >= ?
ORDER BY firehose_arrival
