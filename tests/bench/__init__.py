"""Tributary benchmarks: `make bench` (python -m tests.bench) measures P1-P5 and writes BENCHMARKS.md."""
