"""HdfsSinkConnector: Kafka topics to HDFS files over WebHDFS, exactly once.

Confluent's kafka-connect-hdfs rebuilt on the storage core (``connectors.storage``):
its keys (``hdfs.url``, ``topics.dir``, ``logs.dir``, ``flush.size``,
``rotate.interval.ms``, ``format.class``, the partitioners) and class names, the
formats, partitioners and rotation every storage sink shares. The backend (``store``)
writes each file under a temporary name and renames it when complete, so a killed task
never leaves a half file under a final name, and names it as kafka-connect-hdfs does,
``<topic>+<partition>+<start>+<end>``. Offsets live in Kafka's consumer group like every
Kanal sink's, not in a write-ahead log in HDFS: a file's name and content are
deterministic, so a replay from the committed offset writes the same files; a task
opening a partition also resumes after the files already named in HDFS (``task``).
"""

from kanal_worker.connectors.hdfs.connector import HdfsSinkConnector

__all__ = ["HdfsSinkConnector"]
