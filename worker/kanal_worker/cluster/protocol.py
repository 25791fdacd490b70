"""What the operator (the scheduler) and cluster-mode workers (the executors) agree on.

Each object has a single writer. The operator writes ``Connector`` status: the task
plan (which keys each task changes in the connector configuration), the worker of each
task and a token per task. A worker writes its own ``Lease``: a heartbeat plus a report
of the tasks it runs (state and the token it runs with), the plugins it offers and the
results of offset requests. Both sides derive task configurations, hashes and tokens
with the functions here, so they agree without ever copying a configuration (and the
secrets in it) into status.

Besides the worker's ``api`` and ``config``, this is the only worker module the
operator imports (an import contract holds it), so what the operator needs of the
worker is here: planning a configuration (validation and the plugin's
``task_configs``) and the task states. It never uses Kubernetes clients.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from kanal_worker.api.config import comma_list, describe
from kanal_worker.api.errors import ConfigError
from kanal_worker.config.loader import from_manifest
from kanal_worker.config.providers import PLACEHOLDER
from kanal_worker.runtime.status import State as State  # the states tasks report
from kanal_worker.runtime.status import format_trace
from kanal_worker.runtime.validation import common_settings, connector_plugin, errors_of, validate

GROUP = "kanal.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CONNECTORS = "connectors"
CLUSTERS = "connectclusters"

LABEL_CLUSTER = "kanal.dev/cluster"
LABEL_COMPONENT = "app.kubernetes.io/component"
WORKER_COMPONENT = "worker"
REPORT_ANNOTATION = "kanal.dev/report"
LEASES = ("coordination.k8s.io", "v1", "leases")
"""Group, version and plural of the workers' heartbeat objects."""
MERGE_PATCH = "application/merge-patch+json"
TOPICS_RESET_ANNOTATION = "kanal.dev/topics-reset"
"""Set on a Connector (any new value) to make workers forget its active topics."""

LEASE_DURATION_SECONDS = 6
"""A worker that has not renewed its Lease for this long is gone; its tasks move."""
RENEW_INTERVAL_SECONDS = 2.0
TRACE_LIMIT = 4000
"""Traces are cut to this many characters: Lease annotations and status stay small."""
REPORT_LIMIT = 200_000
"""Bytes a report may take: the API server refuses an object whose annotations together
exceed 256 KiB, so a larger report is trimmed (see ``WorkerReport.to_json``)."""
TRIMMED_TRACE_LIMITS = (2000, 400)
"""Trace lengths tried, in turn, for a report over ``REPORT_LIMIT``."""
REPORT_TRIMMED = "[cut: the worker report was too large] "
"""Marks what was left out of a report to keep it under ``REPORT_LIMIT``."""

SECRET_PROVIDER = "secret"
"""``${secret:<name>:<key>}`` reads key ``<key>`` of Secret ``<name>`` in the namespace."""


def connector_config(body: Mapping[str, Any]) -> dict[str, str]:
    """The Kafka Connect configuration a ``Connector`` resource describes (strings)."""
    return from_manifest(dict(body)).config


def _canonical(kind: str | None, value: str) -> str:
    if kind == "PASSWORD" or kind is None:
        return value
    value = value.strip()
    if kind == "BOOLEAN":
        return value.lower()
    if kind == "LIST":
        return ",".join(comma_list(value))
    if kind == "LONG":
        try:
            return str(int(value))
        except ValueError:
            return value
    return value


def normalize(config: Mapping[str, str]) -> dict[str, str]:
    """``config`` as the plugin reads it: defaults applied, values canonical, keys sorted.

    Two configurations with the same normal form run identically, so the operator
    diffs normal forms and nothing restarts on noise (``2`` vs ``"2"``, ``True`` vs
    ``true``, ``a, b`` vs ``a,b``, an explicit default). Keys no model declares are
    kept as written.
    """
    kinds: dict[str, str] = {}
    defaults: dict[str, str] = {}
    try:
        plugin = connector_plugin(config)
    except ConfigError:
        plugin = None
    if plugin is not None:
        for info in [*describe(common_settings(plugin)), *describe(plugin.cls.settings)]:
            kinds.setdefault(info.name, info.type)
            if info.default_value is not None:
                defaults.setdefault(info.name, info.default_value)
    merged = {key: _canonical(kinds.get(key), value) for key, value in defaults.items()}
    merged.update({key: _canonical(kinds.get(key), value) for key, value in config.items()})
    return dict(sorted(merged.items()))


def _digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def config_hash(config: Mapping[str, str]) -> str:
    """Identifies a configuration by its normal form."""
    return _digest(normalize(config))


def task_token(config_hash: str, overrides: Mapping[str, str], epoch: int) -> str:
    """Identifies one run of a task: a new configuration or a restart gives a new token,
    and a worker restarts a task exactly when its token changes."""
    return _digest([config_hash, dict(overrides), epoch])


def task_overrides(connector: Mapping[str, str], task: Mapping[str, str]) -> dict[str, str]:
    """The keys a plugin's ``task_configs`` changed or added for one task."""
    return {k: v for k, v in sorted(task.items()) if connector.get(k) != v}


def task_config(connector: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """A task's configuration: its connector's plus the keys the plan changed."""
    return {**connector, **overrides}


@dataclass(frozen=True)
class Plan:
    """What the plugin says about a configuration; recomputed only when it changes."""

    config_hash: str
    kind: str | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)
    tasks: list[dict[str, str]] = field(default_factory=list)
    """Per task, the keys its configuration changes (see ``task_overrides``)."""
    trace: str | None = None
    """Why planning failed (the plugin's ``task_configs`` raised)."""
    secrets: frozenset[str] = frozenset()


def plan(config: Mapping[str, str], tasks_max: int) -> Plan:
    """Validate ``config`` and ask its plugin for task configurations."""
    digest = config_hash(config)
    secrets = frozenset(secret_refs(config))
    try:
        plugin = connector_plugin(config)
    except ConfigError as exc:
        return Plan(digest, errors={exc.key or "connector.class": [exc.message]},
                    secrets=secrets)
    try:
        errors = errors_of(validate(config))
    except Exception as exc:  # a plugin's validate() may raise anything
        return Plan(digest, plugin.kind, trace=format_trace(exc), secrets=secrets)
    if errors:
        return Plan(digest, plugin.kind, errors=errors, secrets=secrets)
    try:
        configs = plugin.cls().task_configs(dict(config), tasks_max)[:tasks_max]
    except Exception as exc:
        return Plan(digest, plugin.kind, trace=format_trace(exc), secrets=secrets)
    return Plan(digest, plugin.kind, tasks=[task_overrides(config, c) for c in configs],
                secrets=secrets)


def secret_refs(config: Mapping[str, str]) -> set[str]:
    """Names of the Secrets ``${secret:<name>:<key>}`` placeholders in ``config`` read."""
    return {match.group(2) for value in config.values() if "${" in value
            for match in PLACEHOLDER.finditer(value)
            if match.group(1) == SECRET_PROVIDER and match.group(2)}


def task_key(connector: str, task: int) -> str:
    return f"{connector}/{task}"


def cut_trace(trace: str | None, limit: int = TRACE_LIMIT, marker: str = "…") -> str | None:
    """``trace`` within ``limit`` characters; its end is kept, it says what finally went
    wrong."""
    if trace is None or len(trace) <= limit:
        return trace
    keep = max(0, limit - len(marker))
    return marker + (trace[-keep:] if keep else "")


@dataclass(frozen=True)
class TaskReport:
    """A task as its worker sees it."""

    state: str
    token: str
    trace: str | None = None
    since: float = 0.0
    """Unix time of the last state change (the worker's clock)."""


@dataclass(frozen=True)
class OffsetsResult:
    """The outcome of one offsets request (``spec.offsets``), identified by its nonce."""

    nonce: str
    state: str
    """``Succeeded``, ``Failed`` or ``Running``."""
    message: str = ""
    offsets: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class PlanMismatch:
    """A Connector whose plan this worker will not run: the configuration hash it
    computes differs from the one the operator planned with (``status.configHash``)."""

    generation: int
    """``metadata.generation`` of the Connector the worker compared."""
    planned: str
    computed: str


@dataclass
class WorkerReport:
    """What a worker publishes in its Lease annotation."""

    tasks: dict[str, TaskReport] = field(default_factory=dict)
    plugins: list[dict[str, str]] = field(default_factory=list)
    offsets: dict[str, OffsetsResult] = field(default_factory=dict)
    topics: dict[str, list[str]] = field(default_factory=dict)
    """Topics each connector's tasks used on this worker (REST ``/topics``)."""
    mismatches: dict[str, PlanMismatch] = field(default_factory=dict)
    """Connectors whose plan this worker cannot run, by name."""
    version: str = ""
    """The worker's Kanal version (mismatched plans usually mean different versions)."""

    def to_json(self, limit: int = REPORT_LIMIT) -> str:
        """The report as JSON of at most ``limit`` bytes when it can be: traces are cut
        first, then topics and listed offsets are left out, each with a marker. Task
        states, plugins and plan mismatches are never cut."""
        text = self._json(self)
        for trimmed in self._trimmed():
            if len(text) <= limit:
                break
            text = self._json(trimmed)
        return text.decode()

    def _trimmed(self) -> Iterator[WorkerReport]:
        """Ever smaller versions of this report."""
        for trace_limit in (*TRIMMED_TRACE_LIMITS, len(REPORT_TRIMMED)):
            trimmed = replace(self, tasks={
                key: replace(task, trace=cut_trace(task.trace, trace_limit, REPORT_TRIMMED))
                for key, task in self.tasks.items()})
            yield trimmed
        trimmed = replace(trimmed, topics={})
        yield trimmed
        yield replace(trimmed, offsets={
            key: replace(result, offsets=[], message=f"{REPORT_TRIMMED}{len(result.offsets)} "
                         f"offset(s) left out; {result.message}")
            if result.offsets else result for key, result in self.offsets.items()})

    @staticmethod
    def _json(report: WorkerReport) -> bytes:
        return orjson.dumps({
            "tasks": {k: _compact(vars(v)) for k, v in sorted(report.tasks.items())},
            "plugins": report.plugins,
            "offsets": {k: _compact(vars(v)) for k, v in sorted(report.offsets.items())},
            "topics": {k: sorted(v) for k, v in sorted(report.topics.items()) if v},
            "mismatches": {k: vars(v) for k, v in sorted(report.mismatches.items())},
            "version": report.version,
        })

    @classmethod
    def from_json(cls, text: str | None) -> WorkerReport:
        """Parse a report; anything unreadable counts as an empty report."""
        if not text:
            return cls()
        try:
            data = orjson.loads(text)
            return cls(
                tasks={str(k): TaskReport(**v) for k, v in data.get("tasks", {}).items()},
                plugins=[dict(p) for p in data.get("plugins", [])],
                offsets={str(k): OffsetsResult(**v)
                         for k, v in data.get("offsets", {}).items()},
                topics={str(k): [str(t) for t in v] for k, v in data.get("topics", {}).items()},
                mismatches={str(k): PlanMismatch(**v)
                            for k, v in data.get("mismatches", {}).items()},
                version=str(data.get("version", "")),
            )
        except (orjson.JSONDecodeError, TypeError, AttributeError, ValueError):
            return cls()


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "", [])}
