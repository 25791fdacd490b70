"""The public API for plugin authors: everything a connector, converter or transform needs."""

from kanal_worker.api.config import CommaList, Settings, comma_list, setting
from kanal_worker.api.errors import (
    ConfigError,
    ConnectError,
    DataError,
    RecordWriteError,
    RetriableError,
)
from kanal_worker.api.plugins import (
    Connector,
    Converter,
    HeaderConverter,
    Predicate,
    SchemaAndValue,
    SinkConnector,
    SinkTask,
    SinkTaskContext,
    SourceConnector,
    SourceTask,
    SourceTaskContext,
    Transformation,
)
from kanal_worker.api.records import (
    ConnectRecord,
    Header,
    SinkBatch,
    SinkRecord,
    SourceBatch,
    SourceRecord,
    TopicPartition,
)
from kanal_worker.api.schema import Field, Schema, Type

__all__ = [
    "CommaList",
    "ConfigError",
    "ConnectError",
    "ConnectRecord",
    "Connector",
    "Converter",
    "DataError",
    "Field",
    "Header",
    "HeaderConverter",
    "Predicate",
    "RecordWriteError",
    "RetriableError",
    "Schema",
    "SchemaAndValue",
    "Settings",
    "SinkBatch",
    "SinkConnector",
    "SinkRecord",
    "SinkTask",
    "SinkTaskContext",
    "SourceBatch",
    "SourceConnector",
    "SourceRecord",
    "SourceTask",
    "SourceTaskContext",
    "TopicPartition",
    "Transformation",
    "Type",
    "comma_list",
    "setting",
]
