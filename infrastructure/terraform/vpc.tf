# Optional: the functions in a VPC, to reach an on-premise MinIO over VPN or Direct Connect.
# The subnets reach AWS APIs through the endpoints below (create_endpoints = true) or a NAT.

locals {
  vpc_enabled   = var.vpc != null
  vpc_endpoints = local.vpc_enabled && try(var.vpc.create_endpoints, false)

  # Every AWS API a function calls: forwarder and requeue put to Firehose, delivery and redrive
  # read the MinIO secret, redrive drains a queue and invokes delivery, all send X-Ray segments.
  interface_endpoint_services = local.vpc_endpoints ? toset(["secretsmanager", "sqs", "firehose", "lambda", "xray"]) : toset([])
  gateway_endpoint_services   = local.vpc_endpoints ? toset(["s3", "dynamodb"]) : toset([])
}

resource "aws_security_group" "lambda" {
  count = local.vpc_enabled ? 1 : 0

  name        = "${local.prefix}-functions"
  description = "Sluice ${var.environment} functions: HTTPS to AWS APIs, MinIO on premise"
  vpc_id      = var.vpc.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "minio" {
  for_each = local.vpc_enabled ? toset(var.vpc.minio_cidr_blocks) : toset([])

  security_group_id = aws_security_group.lambda[0].id
  description       = "MinIO"
  ip_protocol       = "tcp"
  from_port         = var.vpc.minio_port
  to_port           = var.vpc.minio_port
  cidr_ipv4         = each.key
}

# Through a NAT: HTTPS anywhere (AWS APIs have no fixed addresses).
resource "aws_vpc_security_group_egress_rule" "https_via_nat" {
  count = local.vpc_enabled && !local.vpc_endpoints ? 1 : 0

  security_group_id = aws_security_group.lambda[0].id
  description       = "AWS APIs through the subnets' NAT"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# Through endpoints: HTTPS to the interface endpoints and the gateway endpoints' prefix lists.
resource "aws_vpc_security_group_egress_rule" "interface_endpoints" {
  count = local.vpc_endpoints ? 1 : 0

  security_group_id            = aws_security_group.lambda[0].id
  description                  = "Interface endpoints"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.endpoints[0].id
}

resource "aws_vpc_security_group_egress_rule" "gateway_endpoints" {
  for_each = aws_vpc_endpoint.gateway

  security_group_id = aws_security_group.lambda[0].id
  description       = "${each.key} gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = each.value.prefix_list_id
}

resource "aws_security_group" "endpoints" {
  count = local.vpc_endpoints ? 1 : 0

  name        = "${local.prefix}-endpoints"
  description = "Sluice ${var.environment}: interface endpoints, HTTPS from the functions"
  vpc_id      = var.vpc.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "endpoints" {
  count = local.vpc_endpoints ? 1 : 0

  security_group_id            = aws_security_group.endpoints[0].id
  description                  = "HTTPS from Sluice functions"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.lambda[0].id
}

resource "aws_vpc_endpoint" "gateway" {
  for_each = local.gateway_endpoint_services

  vpc_id            = var.vpc.vpc_id
  service_name      = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.vpc.route_table_ids
}

resource "aws_vpc_endpoint" "interface" {
  for_each = local.interface_endpoint_services

  vpc_id              = var.vpc.vpc_id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.vpc.subnet_ids
  security_group_ids  = [aws_security_group.endpoints[0].id]
  private_dns_enabled = true
}
