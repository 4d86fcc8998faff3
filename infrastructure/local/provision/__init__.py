"""Stands in for Terraform's apply and the services it creates: moto for S3, SQS, DynamoDB and
Secrets Manager (`moto_service`), SeaweedFS for MinIO (`seaweedfs`) behind a proxy chaos can cut
(`tcp_proxy`), the resources on them (`resources`, `stack_resources`), S3 Inventory's reports
(`s3_inventory`)."""
