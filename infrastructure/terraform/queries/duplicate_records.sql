-- File ids Firehose staged more than once over the last two days (delivery keeps the first; count DISTINCT file_id for totals)
SELECT
  file_id,
  count(*) AS copies,
  count(DISTINCT "$path") AS windows,
  min(dt) AS first_dt,
  max(dt) AS last_dt
FROM "${database}"."${buffers_table}"
WHERE dt >= date_format(current_date - INTERVAL '1' DAY, '%Y-%m-%d')
GROUP BY file_id
HAVING count(*) > 1
ORDER BY copies DESC, file_id
LIMIT 1000
