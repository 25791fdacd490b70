"""The ``ConnectCluster`` and ``Connector`` resources as pydantic models.

These models are the source of the CRDs (``kanal crds`` renders them, a unit test
fails when ``crds/`` drifts) and the operator parses specs and writes statuses with
them, so the schema the API server enforces and the code that reads it cannot differ.
Field docstrings become the descriptions ``kubectl explain`` shows.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, WithJsonSchema
from pydantic.alias_generators import to_camel

from kanal_worker.config.loader import stringify


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore",
                              use_attribute_docstrings=True)

    def dump(self) -> dict[str, Any]:
        """The JSON form Kubernetes stores: camelCase keys, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


IntOrString = Annotated[str, BeforeValidator(stringify),
                        WithJsonSchema({"x-kubernetes-int-or-string": True})]
"""A configuration value. Numbers may be written bare (``tasks.max: 2``); booleans and
decimals must be quoted (``"true"``, ``"0.5"``) because a structural schema can only
widen a string to int-or-string. Kanal stores every value as a string, like Kafka
Connect does."""

FreeForm = Annotated[dict[str, Any], WithJsonSchema(
    {"type": "object", "x-kubernetes-preserve-unknown-fields": True})]
"""A JSON object whose shape belongs to a plugin (source partitions and offsets)."""


_CONDITIONS: dict[str, JsonValue] = {"x-kubernetes-list-type": "map",
                                     "x-kubernetes-list-map-keys": ["type"]}


def _rules(*rules: tuple[str, str]) -> dict[str, JsonValue]:
    return {"x-kubernetes-validations": [{"rule": rule, "message": message}
                                         for rule, message in rules]}


# -- shared ----------------------------------------------------------------------------


class ObjectRef(Model):
    name: str = Field(min_length=1)
    """Name of the referenced object in the same namespace."""


class SecretKeyRef(Model):
    name: str = Field(min_length=1)
    """Name of the Secret in the same namespace."""
    key: str = Field(min_length=1)
    """Key inside the Secret."""


class Condition(Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    """CamelCase cause, e.g. ``InvalidConfiguration`` or ``TaskFailed``."""
    message: str
    """What happened and what to do about it."""
    last_transition_time: str
    observed_generation: int | None = None


# -- ConnectCluster --------------------------------------------------------------------


class KafkaTls(Model):
    ca_secret: SecretKeyRef | None = None
    """CA certificate (PEM) to verify the brokers with; mounted into the workers."""


class KafkaSasl(Model):
    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    username: str = Field(min_length=1)
    password_secret: SecretKeyRef
    """Secret key holding the password; the workers read it, it never enters a ConfigMap."""


class KafkaAuth(Model):
    model_config = ConfigDict(json_schema_extra=_rules(
        ("!has(self.sasl) || self.securityProtocol.startsWith('SASL_')",
         "sasl needs securityProtocol SASL_PLAINTEXT or SASL_SSL"),
        ("!has(self.tls) || self.securityProtocol.endsWith('SSL')",
         "tls needs securityProtocol SSL or SASL_SSL")))

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    tls: KafkaTls | None = None
    sasl: KafkaSasl | None = None


class Resources(Model):
    requests: dict[str, IntOrString] | None = None
    """Container resource requests, e.g. ``{cpu: 500m, memory: 1Gi}``."""
    limits: dict[str, IntOrString] | None = None
    """Container resource limits."""


class ConnectClusterSpec(Model):
    """A group of workers sharing Kafka, offsets and a REST API."""

    model_config = ConfigDict(json_schema_extra=_rules(
        ("!has(self.config) || !('bootstrap.servers' in self.config)",
         "set spec.bootstrapServers instead of config['bootstrap.servers']")))

    replicas: int = Field(1, ge=0)
    """Number of worker pods."""
    bootstrap_servers: str = Field(min_length=1)
    """Kafka brokers, host:port separated by commas."""
    image: str | None = None
    """Worker image; the operator's default when unset."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    resources: Resources | None = None
    config: dict[str, IntOrString] | None = None
    """Worker configuration under Kafka Connect's keys (converters, offset.flush.interval.ms,
    consumer./producer. settings, ...)."""
    kafka: KafkaAuth | None = None
    """How workers authenticate to Kafka."""


class WorkerPlugin(Model):
    class_: str = Field(alias="class")
    type: str
    version: str


class ConnectClusterStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] | None = Field(None, json_schema_extra=_CONDITIONS)
    replicas: int | None = None
    """Worker pods the Deployment has."""
    ready_replicas: int | None = None
    """Workers that heartbeat (their Lease is fresh) and so take tasks."""
    selector: str | None = None
    """Label selector of the worker pods (scale subresource)."""
    workers: list[str] | None = None
    """Names of the live workers."""
    plugins: list[WorkerPlugin] | None = None
    """Connector plugins the workers offer."""


# -- Connector -------------------------------------------------------------------------


class AutoRestart(Model):
    enabled: bool = True
    """Restart FAILED tasks automatically, waiting longer after each attempt."""
    max_restarts: int = Field(10, ge=0)
    """Attempts per task before it stays FAILED; the count resets after 10 minutes of
    RUNNING."""


class RestartRequest(Model):
    nonce: str = Field(min_length=1)
    """Any new value (a timestamp, a counter) asks for one restart; the same value again
    does nothing, so re-applying a manifest never restarts twice."""
    include_tasks: bool = False
    """Restart the tasks too, not only the connector (which re-plans its tasks)."""
    only_failed: bool = False
    """Restart only what is FAILED."""
    tasks: list[int] | None = None
    """Restart exactly these task ids."""


class OffsetEntry(Model):
    partition: FreeForm
    """For sinks ``{kafka_topic, kafka_partition}``; for sources the plugin's partition."""
    offset: FreeForm | None = None
    """For sinks ``{kafka_offset}``; for sources the plugin's offset; absent removes it."""


class OffsetsRequest(Model):
    """A KIP-875 offsets operation, done once per nonce. ``alter`` and ``reset`` need
    ``state: stopped``."""

    model_config = ConfigDict(json_schema_extra=_rules(
        ("self.action != 'alter' || (has(self.offsets) && size(self.offsets) > 0)",
         "action alter needs offsets: [{partition: {...}, offset: {...}}]")))

    nonce: str = Field(min_length=1)
    """Any new value asks for the action once."""
    action: Literal["list", "alter", "reset"]
    offsets: list[OffsetEntry] | None = None
    """For ``alter``: the partitions and their new offsets."""


class ConnectorSpec(Model):
    """A connector: what to run, where, and in which state."""

    model_config = ConfigDict(json_schema_extra=_rules(
        ("!has(self.config) || !('connector.class' in self.config)",
         "set the connector class in spec.class, not in config['connector.class']"),
        ("!has(self.config) || !('tasks.max' in self.config)",
         "set spec.tasksMax, not config['tasks.max']")))

    cluster_ref: ObjectRef = Field(json_schema_extra=_rules(
        ("self == oldSelf", "clusterRef is immutable; create a new Connector to move it")))
    """The ConnectCluster whose workers run this connector."""
    class_: str = Field(alias="class", min_length=1)
    """Connector class or alias, e.g. FileStreamSink or
    io.confluent.connect.azure.blob.AzureBlobStorageSinkConnector."""
    tasks_max: int = Field(1, ge=1)
    """Maximum number of tasks (the scale subresource sets it)."""
    state: Literal["running", "paused", "stopped"] = "running"
    """Target state: paused keeps tasks assigned but idle; stopped removes them."""
    config: dict[str, IntOrString] | None = None
    """Connector configuration under Kafka Connect's keys. ``${secret:<name>:<key>}``
    reads a Secret of this namespace on the worker."""
    auto_restart: AutoRestart | None = None
    """Automatic restart of FAILED tasks (enabled by default)."""
    restart: RestartRequest | None = None
    offsets: OffsetsRequest | None = None


class ConfigIssue(Model):
    key: str
    message: str


class TaskStatus(Model):
    id: int
    state: str
    """UNASSIGNED, RUNNING, PAUSED, FAILED or RESTARTING."""
    worker: str | None = None
    """The worker pod the operator assigned the task to."""
    trace: str | None = None
    token: str
    """Identifies this run of the task; the worker restarts the task when it changes."""
    epoch: int = 0
    """Restarts asked for (by hand or automatically); part of the token."""
    restarts: int = 0
    """Automatic restarts since the task last ran for 10 minutes."""
    config: dict[str, str] | None = None
    """Keys the connector's plan changes for this task (the rest is spec.config)."""


class RestartStatus(Model):
    nonce: str
    tasks: list[int] | None = None
    """Tasks restarted for this nonce."""


class OffsetsStatus(Model):
    nonce: str
    action: str
    state: Literal["Pending", "Running", "Succeeded", "Failed"]
    worker: str | None = None
    """The worker that carries the request out."""
    message: str | None = None
    offsets: list[OffsetEntry] | None = None


class ConnectorStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] | None = Field(None, json_schema_extra=_CONDITIONS)
    state: str | None = None
    """UNASSIGNED, RUNNING, PAUSED, STOPPED or FAILED."""
    type: str | None = None
    """sink or source."""
    trace: str | None = None
    """Why the connector failed (e.g. its task planning raised)."""
    errors: list[ConfigIssue] | None = None
    """Configuration errors by key; tasks do not run while there are any."""
    config_hash: str | None = None
    """Hash of the normalised configuration the tasks were planned from."""
    task_count: int | None = None
    """Planned tasks (the scale subresource's replicas)."""
    tasks_ready: int | None = None
    task_summary: str | None = None
    """Ready tasks / planned tasks."""
    selector: str | None = None
    """Label selector of the pods that run the tasks (scale subresource)."""
    tasks: list[TaskStatus] | None = Field(None, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]})
    restart: RestartStatus | None = None
    """The last restart request carried out."""
    offsets: OffsetsStatus | None = None
    """The last offsets request and its result."""
