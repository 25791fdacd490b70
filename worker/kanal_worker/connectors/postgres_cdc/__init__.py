"""PostgreSQL change data capture, record for record as Debezium's PostgresConnector.

``pgoutput`` decodes the logical replication stream, ``values`` maps column types to
Debezium's Connect schemas, ``events`` builds the change events, ``database`` holds the
checks, publication and slot handling, and ``source`` the connector and its task.
"""

from kanal_worker.connectors.postgres_cdc.source import PostgresConnector

__all__ = ["PostgresConnector"]
