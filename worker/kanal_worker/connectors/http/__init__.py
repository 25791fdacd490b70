"""HTTP connectors: HttpSinkConnector (Aiven's keys and class name) POSTs records to an
endpoint; HttpSourceConnector (castorm's keys and class name) polls a REST endpoint.
``sink`` and ``source`` say what each guarantees; ``client`` how server answers are judged.
"""

from kanal_worker.connectors.http.sink import HttpSinkConnector
from kanal_worker.connectors.http.source import HttpSourceConnector

__all__ = ["HttpSinkConnector", "HttpSourceConnector"]
