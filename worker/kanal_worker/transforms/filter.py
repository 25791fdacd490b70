"""Filter: drops every record; used with a predicate to drop the matching ones."""

from __future__ import annotations

from typing import TypeVar

from kanal_worker.api.plugins import Transformation
from kanal_worker.api.records import ConnectRecord
from kanal_worker.transforms._util import APACHE_PACKAGE

R = TypeVar("R", bound=ConnectRecord)


class Filter(Transformation[R]):
    """Drops all records, filtering them from subsequent transformations in the chain. This
    is intended to be used conditionally to filter out records matching (or not matching) a
    particular Predicate."""

    aliases = (f"{APACHE_PACKAGE}Filter",)

    def apply(self, record: R) -> None:
        return None
