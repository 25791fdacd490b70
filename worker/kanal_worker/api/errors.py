"""Exceptions a plugin raises to tell the runtime what to do next."""


class ConnectError(Exception):
    """A failure that stops the task; the runtime records the trace in the task status."""


class RetriableError(ConnectError):
    """A transient failure: the runtime backs off and retries the same work."""


class DataError(ConnectError):
    """A record cannot be converted or transformed; error handling decides its fate."""


class ConfigError(ValueError):
    """Invalid configuration; ``key`` names the setting so people can find and fix it."""

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
