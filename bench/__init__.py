"""Kanal's benchmarks: Kanal against Apache Kafka Connect and the raw limits of the
broker and the storage, on the same machine (``make bench``; see bench/README.md)."""
