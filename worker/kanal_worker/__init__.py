"""Kanal worker: the runtime that moves records between Kafka and external systems."""

__version__ = "0.1.0"
