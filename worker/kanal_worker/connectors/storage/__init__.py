"""The storage core every object-store sink shares (Azure Blob, S3, and more).

Confluent's storage-common, rebuilt once: formats (``formats``, ``parquet``: JSON,
Avro, Parquet, ByteArray with their compressions), partitioners and timestamp
extractors (``partitioners``, ``timeformat``), rotation by ``flush.size``,
``rotate.interval.ms`` and ``rotate.schedule.interval.ms``, object names and the
exactly-once file sets with their ``.keys`` / ``.headers`` companions (``writer``),
schema evolution (``schemas``), the shared settings (``settings``), their cross-key
checks (``checks``), and the sink task (``task``) that commits offsets only once the
files holding them are in the store.

A sink on this core supplies:

- a settings model subclassing ``settings.StorageSinkSettings`` with its store's keys
  and the ``part_size``, ``compression_type`` and ``compression_level`` properties;
- a task subclassing ``task.StorageSinkTask`` with ``store_problems`` (its own config
  checks), ``open_store`` and ``destination``;
- a backend following ``store.ObjectStore``: ``put``, ``stage`` + ``commit`` (a staged
  or multipart upload, visible atomically), and for probes ``store.ManagedStore``'s
  ``create`` (conditional create), ``names`` (list) and ``delete``;
- optionally its naming: Confluent's S3, GCS and Azure names (``<topic>+<partition>+
  <start>``) by default; a task whose store renames at commit (``store.RenamingStore``)
  may set ``ends_names`` for kafka-connect-hdfs's ``<topic>+<partition>+<start>+<end>``;
- a connector whose ``validate`` returns ``checks.config_problems(settings,
  store problems)``.
"""
