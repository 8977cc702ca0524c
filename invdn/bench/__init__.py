"""Benchmarks run by `invdn bench`: speed (seconds per megapixel, training throughput) and memory."""
