"""Benchmarks (`make bench`, `make bench-e2e`): Sluice against the machine's limits and a real
peer, measured in the same run; results in build/bench.json and docs/BENCHMARKS.md."""
