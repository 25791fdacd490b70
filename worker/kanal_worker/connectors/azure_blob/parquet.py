"""The storage core's ``parquet``, under the module name the Azure sink always had."""

from kanal_worker.connectors.storage.parquet import (
    ParquetFormat,
)

__all__ = [
    "ParquetFormat",
]
