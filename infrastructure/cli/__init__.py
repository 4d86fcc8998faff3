"""The `sluice` command: the local stack and, later, operating a deployment."""
