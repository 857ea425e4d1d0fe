"""Benchmark suite of the CSAKD networks: ``python -m benchmarks.run`` (see benchmarks/run.py)."""
