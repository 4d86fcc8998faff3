-- Late files: landed (event_time) in an earlier hour than the staged hour their rows are under; a line per file with its row count
-- parameters: since (first dt yyyy-MM-dd)
SELECT
  dt,
  hour,
  "key",
  file_id,
  event_time,
  date_format(event_time, '%Y-%m-%d %H') AS event_hour,
  count(*) AS "rows"
FROM "${database}"."${table}"
WHERE dt >= ?
  AND date_format(event_time, '%Y-%m-%d %H') < dt || ' ' || hour
GROUP BY dt, hour, "key", file_id, event_time
ORDER BY dt DESC, hour DESC, event_time, "key"
LIMIT 1000
