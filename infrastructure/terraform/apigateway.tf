# The HTTPS intake (docs/intake.md): an HTTP API whose routes all go to the intake function's
# live alias, with payload format 2.0. Keys are checked by the function itself, so that every
# refusal is an RFC 9457 problem document. The stage throttles each route; the function then
# holds each producer to its own rate. Access logs go to a log group of their own.

locals {
  # The routes transform/intake/handler.py serves (ROUTES); a test keeps the two in step.
  intake_routes = ["POST /v1/files/{name+}", "POST /v1/events", "GET /v1/health", "GET /v1/files/{file_id}"]
}

resource "aws_apigatewayv2_api" "intake" {
  name          = "${local.prefix}-intake"
  description   = "Sluice ${var.environment}: producers post files and events (docs/intake.md)"
  protocol_type = "HTTP"
}

resource "aws_apigatewayv2_integration" "intake" {
  api_id                 = aws_apigatewayv2_api.intake.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_alias.this["intake"].invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 29000
}

resource "aws_apigatewayv2_route" "intake" {
  #checkov:skip=CKV_AWS_309:Authorization NONE at the gateway on purpose: the intake function checks each producer's bearer key itself, so that a refusal is an RFC 9457 problem document like every other answer (an HTTP API authorizer's refusals have fixed bodies); health needs no key (docs/intake.md)
  for_each = toset(local.intake_routes)

  api_id    = aws_apigatewayv2_api.intake.id
  route_key = each.value
  target    = "integrations/${aws_apigatewayv2_integration.intake.id}"
}

resource "aws_cloudwatch_log_group" "intake_access" {
  #checkov:skip=CKV_AWS_338:Access logs kept var.log_retention_days, as the functions' logs; the durable record of each file is the landing bucket and its MinIO archive
  name              = "/aws/apigateway/${local.prefix}-intake"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
}

resource "aws_apigatewayv2_stage" "intake" {
  api_id      = aws_apigatewayv2_api.intake.id
  name        = "$default"
  description = "Sluice ${var.environment}: the intake's only stage"
  auto_deploy = true

  default_route_settings {
    detailed_metrics_enabled = true
    throttling_burst_limit   = var.intake_throttle.burst
    throttling_rate_limit    = var.intake_throttle.rate
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.intake_access.arn
    format = jsonencode({
      requestId      = "$context.requestId"
      ip             = "$context.identity.sourceIp"
      requestTime    = "$context.requestTime"
      routeKey       = "$context.routeKey"
      status         = "$context.status"
      responseLength = "$context.responseLength"
      latencyMs      = "$context.responseLatency"
      integrationMs  = "$context.integrationLatency"
      integrationErr = "$context.integrationErrorMessage"
      userAgent      = "$context.identity.userAgent"
    })
  }

  depends_on = [aws_apigatewayv2_route.intake]
}

resource "aws_lambda_permission" "intake" {
  statement_id  = "IntakeApiInvokes"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this["intake"].function_name
  qualifier     = aws_lambda_alias.this["intake"].name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.intake.execution_arn}/*/*"
}

# Only hashes of producers' keys (transform/intake/producers.py); the value is put outside
# Terraform (`sluice producer add`), so it never reaches the state.
resource "aws_secretsmanager_secret" "producers" {
  #checkov:skip=CKV2_AWS_57:Producers' keys are rotated by adding a new key beside the old one and removing the old once the producer moved (docs/intake.md), not by a rotation Lambda
  name                    = local.names.producers_secret
  description             = "Sluice ${var.environment}: the sha256 of each intake producer's API keys, as JSON {\"producers\": {\"<name>\": {\"key_sha256\": [...]}}} (docs/intake.md)"
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
}
