-- File ids Firehose staged more than once in a day (delivery keeps the first; count DISTINCT file_id for totals)
SELECT
  dt,
  file_id,
  count(*) AS copies,
  count(DISTINCT "$path") AS windows
FROM "${database}"."${buffers_table}"
WHERE dt = date_format(current_date, '%Y-%m-%d')
GROUP BY dt, file_id
HAVING count(*) > 1
ORDER BY copies DESC
LIMIT 1000
