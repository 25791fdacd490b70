"""Configuration errors by key: those that need several keys, and the server's answer.

The connector's ``validate`` answers with both (``server.server_problems`` asks the
server) (the REST validate endpoint, ``kanal
validate``, the operator's status); the task refuses to start with the first of
``config_problems``, so a mistake shows up at creation time with the same message.
"""

from __future__ import annotations

from kanal_worker.connectors.elasticsearch.settings import (
    ElasticsearchSinkSettings,
    index_name_problem,
)


def config_problems(settings: ElasticsearchSinkSettings) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        problems.setdefault(key, []).append(message)

    stream = settings.data_stream_type
    if stream != "NONE" and not settings.data_stream_dataset:
        add("data.stream.dataset", f"Missing: data.stream.type={stream} writes to "
            f"{stream.lower()}-<dataset>-<topic>; set data.stream.dataset, e.g. telemetry")
    if stream == "NONE" and settings.data_stream_dataset:
        add("data.stream.type", "data.stream.dataset is set but data.stream.type is NONE; "
            "set data.stream.type to LOGS or METRICS, or unset data.stream.dataset")
    if stream != "NONE" and settings.write_method == "upsert":
        add("write.method", "data streams only accept new documents; use write.method=insert "
            "or write to an index (data.stream.type=NONE)")
    if stream != "NONE" and not settings.key_ignore:
        add("key.ignore", "a data stream only appends: a second record of a key would be "
            "refused as a duplicate id; set key.ignore=true (ids topic+partition+offset)")
    if stream != "NONE" and settings.behavior_on_null_values == "delete":
        add("behavior.on.null.values", "documents cannot be deleted from a data stream "
            "through the bulk API; use ignore or fail")
    if settings.behavior_on_null_values == "delete" and settings.key_ignore:
        add("behavior.on.null.values", "delete removes the document whose id is the record "
            "key, but key.ignore=true ignores keys; set key.ignore=false")
    if settings.connection_username and not settings.password():
        add("connection.password", "connection.username is set without a password; set "
            "connection.password too, or unset connection.username")
    if settings.password() and not settings.connection_username:
        add("connection.username", "connection.password is set without a user name; set "
            "connection.username too, or unset connection.password")
    for topic in settings.topics:
        name = settings.index_for(topic)
        why = index_name_problem(name)
        if why is not None:
            add("topics", f"topic {topic!r} cannot name the index or data stream {name!r}: "
                f"{why}; rename the topic with a transform (RegexRouter) or choose another")
    return problems
