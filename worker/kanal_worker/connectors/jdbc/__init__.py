"""JDBC-style connectors: Kafka topics to and from PostgreSQL, MySQL/MariaDB and SQLite.

``database`` is the one database layer both directions use (``connection.*`` keys,
JDBC and SQLAlchemy URLs, retries); ``types`` maps Kafka Connect schemas to SQL types.
The sink (``sink``) explains its guarantees.
"""

from kanal_worker.connectors.jdbc.sink import JdbcSinkConnector

__all__ = ["JdbcSinkConnector"]
