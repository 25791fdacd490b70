"""The JSON bodies of Kafka Connect's REST API, as pydantic models.

Field names, nesting and optional keys follow Apache Kafka Connect 4.x, so tools written
for it read Kanal's answers unchanged; the models also make the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, WithJsonSchema

ConnectorType = Literal["source", "sink", "unknown"]


def _scalar(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ValueError("configuration values are strings (numbers and booleans are taken as "
                     "text), not lists or objects")


ConfigValue = Annotated[Any, AfterValidator(_scalar), WithJsonSchema(
    {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]})]
"""Kafka Connect stores strings; like Apache, numbers and booleans are taken as text."""


class ErrorMessage(BaseModel):
    error_code: int = Field(description="The HTTP status code, repeated.")
    message: str


class ServerInfo(BaseModel):
    version: str = Field(description="Kafka Connect API version this worker answers like, "
                                     "then the Kanal version: 4.3.1-kanal-0.1.0.")
    commit: str
    kafka_cluster_id: str | None = Field(description="Null while Kafka cannot be reached.")


class WorkerStatus(BaseModel):
    status: Literal["healthy", "starting", "unhealthy"]
    message: str


class ConnectorTaskId(BaseModel):
    connector: str
    task: int


class ConnectorInfo(BaseModel):
    name: str
    config: dict[str, str] = Field(description="Secret (PASSWORD) values read [hidden].")
    tasks: list[ConnectorTaskId]
    type: ConnectorType


class ConnectorState(BaseModel):
    state: str = Field(description="UNASSIGNED, RUNNING, PAUSED, STOPPED, FAILED or "
                                   "RESTARTING.")
    worker_id: str
    version: str | None = Field(None, description="The connector plugin's version.")
    trace: str | None = Field(None, description="Present when the state is FAILED.")
    detail: str | None = Field(
        None, description="Kanal: what a running task waits for (Kafka unreachable, storage "
                          "being retried); absent when nothing is wrong.")


class TaskState(ConnectorState):
    id: int


class ConnectorStateInfo(BaseModel):
    name: str
    connector: ConnectorState
    tasks: list[TaskState]
    type: ConnectorType


class ConnectorExpansions(BaseModel):
    """What ``GET /connectors?expand=status&expand=info`` shows per connector."""

    status: ConnectorStateInfo | None = None
    info: ConnectorInfo | None = None


class TaskInfo(BaseModel):
    id: ConnectorTaskId
    config: dict[str, str]


class ActiveTopicsInfo(BaseModel):
    topics: list[str]


class ConnectorOffset(BaseModel):
    partition: dict[str, Any] | None = Field(
        None, description="A source partition, or for sinks {kafka_topic, kafka_partition}.")
    offset: dict[str, Any] | None = Field(
        None, description="A source offset, or for sinks {kafka_offset}; null in a PATCH "
                          "removes the partition's offset.")


class ConnectorOffsets(BaseModel):
    offsets: list[ConnectorOffset] | None = None


class Message(BaseModel):
    message: str


class PluginInfo(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_name: str = Field(alias="class")
    type: Literal["sink", "source", "transformation", "predicate", "converter",
                  "header_converter"]
    version: str


class ConfigKeyInfo(BaseModel):
    name: str
    type: str
    required: bool
    default_value: str | None
    importance: str
    documentation: str
    group: str | None
    order_in_group: int = Field(validation_alias=AliasChoices("order_in_group", "order"))
    width: str
    display_name: str
    dependents: list[str]


class ConfigValueInfo(BaseModel):
    name: str
    value: str | None
    recommended_values: list[str]
    errors: list[str]
    visible: bool


class ConfigInfo(BaseModel):
    definition: ConfigKeyInfo
    value: ConfigValueInfo


class ConfigInfos(BaseModel):
    name: str
    error_count: int
    groups: list[str]
    configs: list[ConfigInfo]


class LoggerLevel(BaseModel):
    level: str = Field(description="OFF, FATAL, ERROR, WARN, INFO, DEBUG, TRACE or ALL.")
    last_modified: int | None = Field(
        description="When the REST API last changed it, in ms since the epoch; null when "
                    "never.")


class CreateConnectorRequest(BaseModel):
    name: str | None = None
    config: dict[str, ConfigValue] | None = None
    initial_state: str | None = Field(None, description="RUNNING (default), PAUSED or "
                                                        "STOPPED.")


class LoggerLevelRequest(BaseModel):
    level: str | None = Field(None, description="OFF, FATAL, ERROR, WARN, INFO, DEBUG, TRACE "
                                                "or ALL (Python's WARNING and CRITICAL too).")
