"""Stands in for AWS Lambda: worker processes per function (`runtime`, `workers`, `sandbox`,
`context`), what invokes them (`event_sources`, `s3_notifications`) and the Invoke, mapping and
concurrency APIs (`api`). Plural because `lambda` is a keyword."""
