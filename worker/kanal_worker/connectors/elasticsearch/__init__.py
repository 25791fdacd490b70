"""ElasticsearchSinkConnector: Kafka topics to Elasticsearch or OpenSearch, exactly once.

Confluent's connector, rebuilt: the same configuration keys and defaults and class name
(``io.confluent.connect.elasticsearch.ElasticsearchSinkConnector``); each topic goes to
the index named like it (or to the data stream ``<type>-<dataset>-<topic>``). It talks
to OpenSearch and Elasticsearch alike: only the bulk API and index calls common to both
are used, and no version check refuses either.

Guarantees
----------
Every record ends up in the index once, however often it is delivered (task crashes,
restarts, rebalances, retries), because every write is idempotent:

- ``key.ignore=true``: the document id is ``topic+partition+offset``, so a record
  delivered again rewrites the same document.
- ``key.ignore=false``: the id is the record key and inserts and deletes carry the
  offset as external version: a replayed or older record is refused by the server
  (a version conflict, counted as done), so the newest record of a key wins.
- ``write.method=upsert`` merges in order: a task's bulk requests then go one after
  the other, and a replay applies the same updates again in the same order.

Offsets are committed only after the bulk requests holding their records succeeded
(``write`` returns only then), so nothing is lost either.
"""

from kanal_worker.connectors.elasticsearch.connector import ElasticsearchSinkConnector

__all__ = ["ElasticsearchSinkConnector"]
