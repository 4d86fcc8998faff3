"""Sluice's infrastructure: the tunables every part reads, the schemas, and the local stand-ins.

The Lambda functions import only `infrastructure.tunables`, `infrastructure.environment` and the
schemas; `infrastructure.local` (the stand-ins and the local stack, docs/local-stack.md) is never
imported by function code.
"""
