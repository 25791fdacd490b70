"""A mosquitto of one test's own, for what the shared broker of ``dev/stack up mqtt`` must
not get: restarts, access control lists, revoked users.

It runs Debian's mosquitto as ``dev/stack up mqtt`` installs it (``dev/stack run mqtt
mosquitto``), on port 11983 with its persistence in the test's temporary directory, and
stops cleanly (SIGTERM: it writes its sessions to disk, as a broker being restarted does).
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from dev.stack_env import STACK

PORT = 11983


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Mosquitto:
    """``settings``: extra lines for the listener (``password_file ...``). ``subscribe``:
    topic patterns anonymous clients may subscribe to, enforced by mosquitto's dynamic
    security plugin (found in ``plugins``), which refuses other subscriptions with SUBACK
    0x87 Not authorized."""

    def __init__(self, directory: Path, *settings: str, subscribe: list[str] | None = None,
                 plugins: str = "") -> None:
        self.directory = directory
        self.log = directory / "mosquitto.log"
        (directory / "data").mkdir(parents=True, exist_ok=True)
        lines = [f"user {getpass.getuser()}", "persistence true",
                 f"persistence_location {directory / 'data'}/", "max_queued_messages 0",
                 "max_inflight_messages 0", "log_dest stderr", "log_type error",
                 "log_type warning", "log_type notice", "connection_messages true",
                 f"listener {PORT} 127.0.0.1", "allow_anonymous true", *settings]
        if subscribe is not None:
            security = directory / "dynamic-security.json"
            security.write_text(json.dumps(dynamic_security(subscribe)))
            lines += [f"plugin {plugins}/mosquitto_dynamic_security.so",
                      f"plugin_opt_config_file {security}"]
        self.config = directory / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{PORT}"

    def start(self) -> Mosquitto:
        assert not port_open(PORT), f"port {PORT} is taken: another test broker runs"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(STACK), "run", "mqtt", "mosquitto", "-c", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while not port_open(PORT):
            assert self.process.poll() is None, f"mosquitto exited; see {self.log}"
            assert time.monotonic() < deadline, f"mosquitto did not listen; see {self.log}"
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(30)
        while port_open(PORT):
            time.sleep(0.1)

    def restart(self) -> None:
        self.stop()
        self.start()

    def logged_since(self, offset: int) -> str:
        return self.log.read_bytes()[offset:].decode(errors="replace")

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0


def dynamic_security(subscribe: list[str]) -> dict[str, Any]:
    """The dynamic security plugin's configuration: anonymous clients may publish and
    receive anything, and subscribe only to ``subscribe``."""
    return {
        "defaultACLAccess": {"publishClientSend": True, "publishClientReceive": True,
                             "subscribe": False, "unsubscribe": True},
        "clients": [],
        "groups": [{"groupname": "anonymous", "roles": [{"rolename": "subscriber"}],
                    "clients": []}],
        "roles": [{"rolename": "subscriber", "acls": [
            {"acltype": "subscribePattern", "topic": topic, "priority": 0, "allow": True}
            for topic in subscribe]}],
        "anonymousGroup": "anonymous",
    }
