"""Connector and task states as Kafka Connect reports them."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from enum import StrEnum


class State(StrEnum):
    UNASSIGNED = "UNASSIGNED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"
    FAILED = "FAILED"
    RESTARTING = "RESTARTING"


class TargetState(StrEnum):
    """What the user asked for; the runtime drives the actual state towards it."""

    STARTED = "STARTED"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"

    @classmethod
    def from_initial(cls, initial: str) -> TargetState:
        return {"RUNNING": cls.STARTED, "PAUSED": cls.PAUSED,
                "STOPPED": cls.STOPPED}[initial.upper()]

    @property
    def running_state(self) -> State:
        return {TargetState.STARTED: State.RUNNING, TargetState.PAUSED: State.PAUSED,
                TargetState.STOPPED: State.STOPPED}[self]


@dataclass
class Status:
    state: State = State.UNASSIGNED
    worker_id: str = ""
    trace: str | None = None
    changed_at: float = field(default_factory=time.time)
    detail: str | None = None
    """A short human line on what the task is doing (e.g. retrying storage)."""

    def set(self, state: State, trace: str | None = None, detail: str | None = None) -> None:
        self.state = state
        self.trace = trace
        self.detail = detail
        self.changed_at = time.time()


def format_trace(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).rstrip()
