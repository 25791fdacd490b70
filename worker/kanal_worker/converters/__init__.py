"""Converters compatible with Kafka Connect's JsonConverter, StringConverter and friends."""
