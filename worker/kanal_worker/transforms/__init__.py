"""Kafka Connect's single message transforms and predicates, under Apache's names and keys.

Every transform works on schemaless maps and on structs with schemas, raises the
errors Apache raises (``DataError`` for a record it cannot handle, ``ConfigError`` for a
bad setting) and answers to Apache's class names, e.g.
``org.apache.kafka.connect.transforms.InsertField$Value``.
"""
