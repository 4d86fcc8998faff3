# MinIO's endpoint, bucket and credentials (delivery/minio_access.py). Terraform creates the
# secret only: its value is put outside Terraform (README.md), so it never reaches the state.

resource "aws_secretsmanager_secret" "minio" {
  name                    = local.names.minio_secret
  description             = "Sluice ${var.environment}: MinIO as JSON {\"endpoint\": \"host:port\", \"access_key\", \"secret_key\", \"bucket\", optional \"secure\" (default true), optional \"region\"}. Set with `aws secretsmanager put-secret-value`; rotate with two MinIO keys overlapping (README.md)."
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
}
