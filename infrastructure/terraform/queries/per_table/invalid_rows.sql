-- Rows that failed the schema (valid = false), most recent first: the file key, the record number in it and the error
-- parameters: since (first dt yyyy-MM-dd)
SELECT
  dt,
  hour,
  "key",
  record_number,
  error,
  event_time,
  file_id,
  version_id,
  window_id
FROM "${database}"."${table}"
WHERE NOT valid
  AND dt >= ?
ORDER BY dt DESC, hour DESC, event_time DESC, "key", record_number
LIMIT 1000
