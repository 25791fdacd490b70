"""The connector: Confluent's class name and configuration, Kanal's task.

``validate`` also writes and deletes one probe object (with a short timeout and no
retries), so a missing bucket, wrong credentials, an unreachable endpoint or a bucket
without write permission show up at creation time under the key to fix, not first in
the task status.
"""

from __future__ import annotations

import logging
import uuid

from kanal_worker.api import ConnectError, SinkConnector
from kanal_worker.connectors.s3.settings import S3SinkSettings
from kanal_worker.connectors.s3.task import S3SinkTask
from kanal_worker.connectors.storage.checks import config_problems

log = logging.getLogger(__name__)
PROBE_TIMEOUT_MS = 5000


class S3SinkConnector(SinkConnector[S3SinkSettings]):
    settings = S3SinkSettings
    task_class = S3SinkTask
    aliases = ("io.confluent.connect.s3.S3SinkConnector",)

    def validate(self, settings: S3SinkSettings) -> dict[str, list[str]]:
        problems = config_problems(settings, S3SinkTask.store_problems(settings))
        if not problems:
            problems = access_problems(settings)
        return problems


def access_problems(settings: S3SinkSettings) -> dict[str, list[str]]:
    """Whether the task could write into the bucket, by the key to fix."""
    from kanal_worker.connectors.s3.store import S3Refusal, S3Store, S3Unreachable, s3_client

    store = S3Store(settings, s3_client(settings, retries=0, timeout_ms=PROBE_TIMEOUT_MS))
    delim = settings.directory_delim
    prefix = f"{settings.topics_dir}{delim}" if settings.topics_dir else ""
    probe = f"{prefix}.kanal-write-probe-{uuid.uuid4().hex}"
    try:
        store.put(probe, b"")
        try:
            store.delete(probe)
        except ConnectError as exc:  # writing is what the task needs; deleting is not
            log.info("Could not delete the write probe %s: %s", probe, exc)
    except (S3Refusal, S3Unreachable) as exc:
        return {exc.key: [str(exc)]}
    except ConnectError as exc:
        return {"s3.bucket.name": [str(exc)]}
    finally:
        store.close()
    return {}
