"""The storage core's ``timeformat``, under the module name the Azure sink always had."""

from kanal_worker.connectors.storage.timeformat import (
    JodaPattern,
    PatternError,
    bucket_start,
    parse_zone,
)

__all__ = [
    "JodaPattern",
    "PatternError",
    "bucket_start",
    "parse_zone",
]
