"""Stand-ins for what cannot run on one machine, and the local stack that runs them.

`firehose/` stands in for Amazon Data Firehose, `lambdas/` for AWS Lambda, `provision/` for
Terraform's apply on moto and SeaweedFS, `stack/` for a deployment (`sluice up`); `loopback.py` is
their shared HTTP plumbing, `lifeline.py` ties their processes' lifetimes. Never imported by
function code: the functions reach these only through the protocols they would use in AWS.
Spec, module by module: docs/local-stack.md.
"""
