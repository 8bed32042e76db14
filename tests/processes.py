"""Stopping what a test started: a newproxy master and its workers, whatever state they are in."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_group(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """TERM (a fast stop), then SIGKILL to the process group (the workers too, whatever happened).
    The process must have been started with ``start_new_session=True``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
