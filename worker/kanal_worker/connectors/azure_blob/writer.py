"""The storage core's ``writer``, under the module name the Azure sink always had."""

from kanal_worker.connectors.storage.writer import (
    Layout,
    next_rotation,
)

__all__ = [
    "Layout",
    "next_rotation",
]
