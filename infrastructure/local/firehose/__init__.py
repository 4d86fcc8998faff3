"""Stands in for Amazon Data Firehose: its JSON API on loopback (`server`) over the window-assembly
library (`window_assembly`, `prefixes`): buffers, processor contract, GZIP, key namespaces, error
records, Direct PUT quotas."""
