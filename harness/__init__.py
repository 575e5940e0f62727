"""Storage-to-GPU throughput benchmarking and validation harness for deep-learning training."""

__version__ = "0.1.0"
