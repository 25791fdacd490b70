"""AzureBlobStorageSinkConnector: Kafka topics to Azure Blob Storage, exactly once.

Confluent's connector, rebuilt: the same configuration keys and defaults, class names
(``io.confluent.connect.azure.blob.AzureBlobStorageSinkConnector``, its formats and
``io.confluent.connect.storage.partitioner.*``), directory layout and object names
(``<topics.dir>/<topic>/<encoded partition>/<topic>+<partition>+<start offset>.<ext>``).

Guarantees
----------
Every record reaches the container exactly once, in exactly one file, when file
boundaries are deterministic, that is with

- ``DefaultPartitioner`` or ``FieldPartitioner``, or a time-based partitioner
  (``TimeBasedPartitioner``, ``HourlyPartitioner``, ``DailyPartitioner``) with
  ``timestamp.extractor`` ``Record`` or ``RecordField``;
- ``rotate.interval.ms`` unset or with those extractors (also with the Default and
  Field partitioners, where Confluent ignores it);
- ``rotate.schedule.interval.ms`` unset (it rotates on the wall clock);
- the same configuration (partitioner, ``flush.size``, format, ...) across restarts.

It holds across task crashes, restarts, rebalances and zombie tasks, storage outages
and retries, late and out-of-order records. ``Wallclock`` extraction or scheduled
rotation keep at-least-once: a replay after a crash can cut files elsewhere and write
some records a second time under another name.

How: offsets are committed only after every file holding the records before them is
committed to storage, and a replay from a committed offset cuts the same files with
the same names and bytes (``writer`` explains why). A blob becomes visible in one
atomic step (``commit_block_list`` or a single put), so readers never see half a file.
"""

from kanal_worker.connectors.azure_blob.connector import AzureBlobStorageSinkConnector

__all__ = ["AzureBlobStorageSinkConnector"]
