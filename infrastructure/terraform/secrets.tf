# MinIO's endpoint, bucket and credentials (delivery/minio_access.py). Terraform creates the
# secret only: its value is put outside Terraform (README.md), so it never reaches the state.

resource "aws_secretsmanager_secret" "minio" {
  #checkov:skip=CKV2_AWS_57:The value is MinIO's access key, which only MinIO can issue: rotation is the two-key overlap procedure of README.md, done on the MinIO side, not a Secrets Manager rotation Lambda
  name                    = local.names.minio_secret
  description             = "Sluice ${var.environment}: MinIO as JSON {\"endpoint\": \"host:port\", \"access_key\", \"secret_key\", \"bucket\", optional \"secure\" (default true), optional \"region\"}. Set with `aws secretsmanager put-secret-value`; rotate with two MinIO keys overlapping (README.md)."
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
}
