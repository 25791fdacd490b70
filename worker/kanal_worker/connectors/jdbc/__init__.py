"""JDBC-style connectors: Kafka topics to and from PostgreSQL, MySQL/MariaDB and SQLite.

``database`` is the one database layer both directions use (``connection.*`` keys,
JDBC and SQLAlchemy URLs, retries); ``types`` maps Kafka Connect schemas to SQL types.
"""
