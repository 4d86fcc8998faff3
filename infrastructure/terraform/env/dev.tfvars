# make plan|deploy|destroy ENV=dev
environment = "dev"

# Landed files expire: dev keeps no archive copy in S3.
landing_archive_mode = "expire"
landing_expire_days  = 15

# Throw-away: buckets and the secret go with `make destroy`.
force_destroy               = true
deletion_protection         = false
secret_recovery_window_days = 0
log_retention_days          = 14

# AWS-managed keys; producers of this account only.
create_kms_key = false
producers      = {}

athena_bytes_scanned_cutoff = 1073741824
