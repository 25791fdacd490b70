"""A worker stops on SIGINT/SIGTERM even when the kernel hands the signal to a thread
other than the main one (a task's, a client library's)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

WORKER_MAIN = textwrap.dedent("""
    import signal, threading, time
    from kanal_worker.cli import stop_on_signals, until_stopped

    stop = stop_on_signals()

    def signal_this_thread():
        time.sleep(0.3)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        time.sleep(30)  # a busy task thread, never the one that ends the wait

    threading.Thread(target=signal_this_thread, daemon=True).start()
    until_stopped(stop)
    print("stopped")
""")


def test_a_signal_delivered_to_another_thread_still_stops_the_worker() -> None:
    # an untimed wait never returns here: the run would time out
    done = subprocess.run([sys.executable, "-c", WORKER_MAIN], capture_output=True,
                          text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped"
