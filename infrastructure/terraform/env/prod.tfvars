# make plan|deploy|destroy ENV=prod
environment = "prod"

# The owner's choice (seed 003): every landed file kept, in Deep Archive after 7 days.
# `expire` leaves the MinIO archives as the only durable copy; README.md compares the costs.
landing_archive_mode                   = "deep_archive"
landing_hot_days                       = 7
landing_noncurrent_days                = 15
transition_default_minimum_object_size = "varies_by_storage_class"

force_destroy               = false
deletion_protection         = true
secret_recovery_window_days = 30
log_retention_days          = 90

# Customer key for every store (also required by producers of other accounts).
create_kms_key = true

# Each producer writes under its own prefix, e.g.
#   producers = { acme = ["arn:aws:iam::111122223333:role/acme-uploader"] }
producers = {}

# Set to the on-call address (the subscription must be confirmed from the mail).
alarm_email = null

# The account's central log bucket for S3 server access logs (SSE-S3); set it before deploying.
# access_log_bucket = "<org>-s3-access-logs"
