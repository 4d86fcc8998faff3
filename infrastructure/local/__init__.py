"""Local stand-ins for what cannot run here: Firehose's window assembly, a Lambda context, the demo.

Never imported by function code: the functions reach these only through the protocols they
would use in AWS (boto3 clients, Lambda events).
"""
