"""Running the command beside the servers, and waiting for it before they are stopped.

The command gets the launcher's environment plus the servers' (URLs and, for the tests, where the servers live).
SIGTERM and SIGHUP sent to the launcher are passed on to it, so that it ends first and the servers are stopped
after; SIGINT only when asked (see `run_command`).
"""

from __future__ import annotations

import os
import signal
import subprocess


def run_command(command: list[str], environment: dict[str, str], *, forward_sigint: bool) -> int:
    """Run ``command`` and wait for it; this launcher waits for it to finish before the servers are stopped.
    SIGTERM and SIGHUP are passed on; SIGINT too when ``forward_sigint`` (honcho takes a second one calmly; pytest
    would abort harder, and the terminal's Ctrl-C reaches the whole group anyway)."""
    child = subprocess.Popen(command, env={**os.environ, **environment})

    def forward(signum, frame):
        if signum != signal.SIGINT or forward_sigint:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        try:
            return child.wait()
        except InterruptedError:
            continue
