"""The local real stack and the scripts around it (importable for tests and benchmarks)."""
