"""Sluice's infrastructure: the tunables every part reads, the schemas, and the local stand-ins.

The Lambda functions import only `infrastructure.tunables`, `infrastructure.environment` and the
schemas; `infrastructure.local` (the window assembly library, the demo, later the local stack)
is never imported by function code.
"""
