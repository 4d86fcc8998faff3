-- Firehose error output per day and code: Lambda.ProcessingFailed stays quarantined, other codes are requeued
SELECT
  dt,
  errorcode,
  count(*) AS records,
  min(from_unixtime(arrivaltimestamp / 1000e0)) AS first_arrival,
  max(from_unixtime(arrivaltimestamp / 1000e0)) AS last_arrival
FROM "${database}"."${errors_table}"
WHERE error_output_type = 'processing-failed'
  AND dt >= date_format(current_date - INTERVAL '6' DAY, '%Y-%m-%d')
GROUP BY dt, errorcode
ORDER BY dt DESC, records DESC
