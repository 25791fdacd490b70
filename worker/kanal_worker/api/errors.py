"""Exceptions a plugin raises to tell the runtime what to do next.

Each names the Java exception Apache Kafka Connect throws in the same situation
(``java_class``): dead-letter records carry it in ``__connect.errors.exception.class.name``,
where tools that route failed records by class expect Apache's names. A raise site where
Apache throws something else passes ``java_class`` (e.g. ExtractField's unknown field is
Java's ``IllegalArgumentException``).
"""

class ConnectError(Exception):
    """A failure that stops the task; the runtime records the trace in the task status."""

    java_class: str = "org.apache.kafka.connect.errors.ConnectException"

    def __init__(self, *args: object, java_class: str | None = None) -> None:
        super().__init__(*args)
        if java_class is not None:
            self.java_class = java_class


class RetriableError(ConnectError):
    """A transient failure: the runtime backs off and retries the same work.

    ``retry_after`` (seconds) replaces the runtime's backoff when the external system
    said how long to wait (an HTTP Retry-After) or the plugin's own retry settings do.
    """

    java_class = "org.apache.kafka.connect.errors.RetriableException"

    def __init__(self, *args: object, java_class: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(*args, java_class=java_class)
        self.retry_after = retry_after


class DataError(ConnectError):
    """A record cannot be converted or transformed; error handling decides its fate."""

    java_class = "org.apache.kafka.connect.errors.DataException"


class ConfigError(ValueError):
    """Invalid configuration; ``key`` names the setting so people can find and fix it."""

    java_class = "org.apache.kafka.common.config.ConfigException"

    def __init__(self, key: str | None, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


class RecordWriteError(ConnectError):
    """A sink could not write specific records; the runtime routes them to error handling.

    Raised from ``SinkTask.write`` when the rest of the batch was written. ``failures``
    pairs each rejected record with the reason, so the dead-letter queue receives
    exactly the records that failed instead of the whole batch.
    """

    def __init__(self, failures: list[tuple[object, BaseException]]) -> None:
        self.failures = failures
        super().__init__(f"{len(failures)} record(s) rejected by the sink")
