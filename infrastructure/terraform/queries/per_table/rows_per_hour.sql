-- Rows per staged hour over the last two days: all, valid, invalid (failed the schema) and the files they came from
SELECT
  dt,
  hour,
  count(*) AS "rows",
  sum(CASE WHEN valid THEN 1 ELSE 0 END) AS valid_rows,
  sum(CASE WHEN valid THEN 0 ELSE 1 END) AS invalid_rows,
  count(DISTINCT file_id) AS files
FROM "${database}"."${table}"
WHERE dt >= date_format(current_date - INTERVAL '1' DAY, '%Y-%m-%d')
GROUP BY dt, hour
ORDER BY dt, hour
