terraform {
  # 1.11: `override_during` in the tests and S3-native state locking (`use_lockfile`).
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100.0, < 6.0.0"
    }
  }

  # Partial configuration: `make deploy ENV=…` passes env/<ENV>.s3.tfbackend and the state
  # bucket (see README.md in this directory). Locking uses S3 conditional writes (use_lockfile).
  backend "s3" {}
}
