"""Benchmarks: `python -m mini_t2i.bench.<name>` prints a table and writes JSON."""
