"""Kafka Connect's REST API, served by every Kanal worker."""
