"""Benchmarks of pyhub_ai: `make bench` (see bench/history_scaling.py)."""
