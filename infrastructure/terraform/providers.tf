provider "aws" {
  region = local.region

  default_tags {
    tags = merge(var.tags, {
      Project     = "sluice"
      Environment = var.environment
      ManagedBy   = "terraform"
    })
  }
}
