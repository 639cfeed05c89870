"""Benchmarks of the credit path; run `python -m bench.credits` from the project root."""
