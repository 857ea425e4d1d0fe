"""Benchmarks: ``python -m benchmarks.run`` (speed and memory of the networks, benchmarks/run.py) and
``python -m benchmarks.kd`` (what distillation adds: strategies × seeds, benchmarks/kd.py)."""
