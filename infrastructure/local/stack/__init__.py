"""Stands in for a deployment: the local stack `sluice up` runs (`local_stack`), its
`.sluice/stack.json` (`stack_file`), gameday chaos and its control API (`chaos`), and `make demo`
(`demo`)."""
