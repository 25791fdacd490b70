"""GcsSinkConnector: Kafka topics to Google Cloud Storage, exactly once.

Confluent's ``io.confluent.connect.gcs.GcsSinkConnector`` rebuilt on the storage core
(``connectors.storage``): the same keys (``gcs.bucket.name``, ``gcs.part.size``,
``gcs.credentials.path``, ``gcs.credentials.json`` and the storage keys every sink
shares), formats, partitioners, rotation and object names
(``<topics.dir>/<topic>/<encoded partition>/<topic>+<partition>+<start offset>.<ext>``),
with the same exactly-once guarantee as the other object-store sinks. The backend
(``store``) uploads through google-cloud-storage: one request per small file, a
resumable upload per large one, whose object appears only when it is complete.
"""

from kanal_worker.connectors.gcs.connector import GcsSinkConnector

__all__ = ["GcsSinkConnector"]
