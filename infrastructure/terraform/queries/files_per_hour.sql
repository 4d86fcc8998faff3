-- Files staged per hour over the last two days; Firehose can duplicate records, so files are DISTINCT file_id
SELECT
  dt,
  hour,
  count(DISTINCT file_id) AS files,
  count(*) - count(DISTINCT file_id) AS duplicate_records,
  count(DISTINCT "$path") AS windows
FROM "${database}"."${buffers_table}"
WHERE dt >= date_format(current_date - INTERVAL '1' DAY, '%Y-%m-%d')
GROUP BY dt, hour
ORDER BY dt, hour
