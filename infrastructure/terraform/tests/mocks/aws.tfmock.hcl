# Offline stand-ins for what AWS would compute. ARNs are well-formed because resources that
# reference them validate them.

mock_data "aws_caller_identity" {
  defaults = {
    account_id = "123456789012"
    arn        = "arn:aws:iam::123456789012:user/terraform-test"
    user_id    = "AIDAEXAMPLEUSERID0001"
  }
}

mock_data "aws_partition" {
  defaults = {
    partition          = "aws"
    dns_suffix         = "amazonaws.com"
    reverse_dns_prefix = "com.amazonaws"
  }
}

mock_data "aws_region" {
  defaults = {
    name        = "eu-west-2"
    endpoint    = "ec2.eu-west-2.amazonaws.com"
    description = "Europe (London)"
  }
}

# The tests assert on the statements the configuration writes, not on the rendered JSON.
mock_data "aws_iam_policy_document" {
  defaults = {
    json          = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    minified_json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
  }
}

mock_resource "aws_s3_bucket" {
  defaults = {
    arn = "arn:aws:s3:::sluice-test-bucket"
  }
}

mock_resource "aws_sqs_queue" {
  defaults = {
    arn = "arn:aws:sqs:eu-west-2:123456789012:sluice-test-queue"
    url = "https://sqs.eu-west-2.amazonaws.com/123456789012/sluice-test-queue"
  }
}

mock_resource "aws_dynamodb_table" {
  defaults = {
    arn = "arn:aws:dynamodb:eu-west-2:123456789012:table/sluice-test-table"
  }
}

mock_resource "aws_kms_key" {
  defaults = {
    arn    = "arn:aws:kms:eu-west-2:123456789012:key/11111111-2222-3333-4444-555555555555"
    key_id = "11111111-2222-3333-4444-555555555555"
  }
}

mock_resource "aws_iam_role" {
  defaults = {
    arn = "arn:aws:iam::123456789012:role/sluice-test-role"
  }
}

mock_resource "aws_cloudwatch_log_group" {
  defaults = {
    arn = "arn:aws:logs:eu-west-2:123456789012:log-group:/aws/lambda/sluice-test"
  }
}

mock_resource "aws_lambda_function" {
  defaults = {
    arn           = "arn:aws:lambda:eu-west-2:123456789012:function:sluice-test"
    qualified_arn = "arn:aws:lambda:eu-west-2:123456789012:function:sluice-test:7"
    invoke_arn    = "arn:aws:apigateway:eu-west-2:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-2:123456789012:function:sluice-test:7/invocations"
    version       = "7"
  }
}

mock_resource "aws_lambda_alias" {
  defaults = {
    arn        = "arn:aws:lambda:eu-west-2:123456789012:function:sluice-test:live"
    invoke_arn = "arn:aws:apigateway:eu-west-2:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-2:123456789012:function:sluice-test:live/invocations"
  }
}

mock_resource "aws_secretsmanager_secret" {
  defaults = {
    arn = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:sluice-test/minio-AbCdEf"
  }
}

mock_resource "aws_sns_topic" {
  defaults = {
    arn = "arn:aws:sns:eu-west-2:123456789012:sluice-test-alarms"
  }
}

mock_resource "aws_kinesis_firehose_delivery_stream" {
  defaults = {
    arn = "arn:aws:firehose:eu-west-2:123456789012:deliverystream/sluice-test-0"
  }
}

mock_resource "aws_vpc_endpoint" {
  defaults = {
    prefix_list_id = "pl-0123456789abcdef0"
  }
}

mock_resource "aws_security_group" {
  defaults = {
    id = "sg-0123456789abcdef0"
  }
}

mock_resource "aws_apigatewayv2_api" {
  defaults = {
    id            = "abc123def4"
    arn           = "arn:aws:apigateway:eu-west-2::/apis/abc123def4"
    execution_arn = "arn:aws:execute-api:eu-west-2:123456789012:abc123def4"
    api_endpoint  = "https://abc123def4.execute-api.eu-west-2.amazonaws.com"
  }
}

mock_resource "aws_apigatewayv2_stage" {
  defaults = {
    arn           = "arn:aws:apigateway:eu-west-2::/apis/abc123def4/stages/$default"
    execution_arn = "arn:aws:execute-api:eu-west-2:123456789012:abc123def4/$default"
    invoke_url    = "https://abc123def4.execute-api.eu-west-2.amazonaws.com/"
  }
}
