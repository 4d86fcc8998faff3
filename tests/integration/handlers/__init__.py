"""Test doubles of Lambda functions, run by the local Lambda runtime's worker processes.

Each module is a handler as Lambda imports it (`module.lambda_handler(event, context)`). They
report what they saw by appending JSON lines to a file named in their event (or in their
environment), since they run in other processes than the tests.
"""
