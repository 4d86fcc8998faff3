"""The HTTPS intake: producers that cannot write to S3 POST files and events to an HTTP API, and
the intake lands them in the landing bucket under the producer's own prefix, where the pipeline
takes them exactly as it takes files put to S3 (docs/intake.md).

`handler` is the Lambda entry point (API Gateway HTTP API, payload format 2.0); `requests`
parses and validates what a producer sent; `producers` knows who holds which key; `landing`
writes to S3; `throttle` counts each producer's requests; `problems` answers errors as RFC 9457
problem documents.
"""
