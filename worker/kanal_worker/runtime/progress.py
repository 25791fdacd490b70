"""The periodic line a person watches: records moved and rate, per task."""

from __future__ import annotations

import logging
import threading

from kanal_worker.runtime.standalone import StandaloneHerder

log = logging.getLogger("kanal.progress")


class ProgressReporter:
    def __init__(self, herder: StandaloneHerder, interval: float) -> None:
        self.herder = herder
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def start(self) -> None:
        if self.interval > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        idle: set[str] = set()
        while not self._stop.wait(self.interval):
            for runner in self.herder.runners():
                moved, rate = runner.metrics.rate()
                # one line when a task goes idle, then silence until it moves again
                if moved == 0 and str(runner.id) in idle:
                    continue
                (idle.add if moved == 0 else idle.discard)(str(runner.id))
                m = runner.metrics
                failed = f", {m.records_failed} failed" if m.records_failed else ""
                log.info("%s %s: %s records (+%s, %.0f/s)%s", runner.id, runner.status.state,
                         f"{m.records_out:,}", f"{moved:,}", rate, failed)
