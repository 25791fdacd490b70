"""The storage core's ``partitioners``, under the module name the Azure sink always had."""

from kanal_worker.connectors.storage.partitioners import (
    TimeBasedPartitioner,
    build_extractor,
    build_partitioner,
    partitioner_problems,
)

__all__ = [
    "TimeBasedPartitioner",
    "build_extractor",
    "build_partitioner",
    "partitioner_problems",
]
