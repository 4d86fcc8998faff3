"""The transform side: S3 events to Firehose records (forwarder), records validated and enriched
inside Firehose (processor), and records of failed processor invocations put back (requeue).

`transform.envelope` is the wire contract the delivery side reads too.
"""
