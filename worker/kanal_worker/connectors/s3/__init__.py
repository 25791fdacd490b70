"""S3SinkConnector: Kafka topics to Amazon S3 (or any S3-compatible store), exactly once.

Confluent's kafka-connect-s3, rebuilt on the storage core (``connectors.storage``):
the same configuration keys and defaults, class names
(``io.confluent.connect.s3.S3SinkConnector``, ``io.confluent.connect.s3.format.*``,
``io.confluent.connect.storage.partitioner.*``), directory layout and object names
(``<topics.dir>/<topic>/<encoded partition>/<topic>+<partition>+<start offset>.<ext>``).

The guarantees are the storage core's (see ``connectors.azure_blob`` and
``connectors.storage.writer``): exactly once with deterministic file boundaries, at
least once with wall-clock time. An object becomes visible in one step (a single
``PutObject`` or ``CompleteMultipartUpload``), so readers never see half a file.
"""

from kanal_worker.connectors.s3.connector import S3SinkConnector

__all__ = ["S3SinkConnector"]
