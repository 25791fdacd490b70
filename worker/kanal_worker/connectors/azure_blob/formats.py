"""The storage core's ``formats``, under the module name the Azure sink always had."""

from kanal_worker.connectors.storage.formats import (
    CHUNK,
    AvroFormat,
    BlockSpool,
    ByteArrayFormat,
    FileFormat,
    JsonFormat,
    build_format,
)

__all__ = [
    "CHUNK",
    "AvroFormat",
    "BlockSpool",
    "ByteArrayFormat",
    "FileFormat",
    "JsonFormat",
    "build_format",
]
