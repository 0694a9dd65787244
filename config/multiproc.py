"""Where prometheus_client's multiprocess mode keeps its files: one directory per deployment, shared by the web's
gunicorn workers and the Celery processes of this checkout, so one ``GET /metrics`` sums them all.

Stdlib only (gunicorn.conf.py and config/settings.py call it before prometheus_client is imported anywhere:
prometheus_client picks multiprocess mode from the environment at import).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
_PID_FILE = re.compile(r"_(\d+)\.db$")


def multiproc_dir_setup(base_dir: Path) -> str:
    """PROMETHEUS_MULTIPROC_DIR, or a directory in the temp dir named after this checkout (nothing to create by
    hand in a fresh clone); created, exported to this process's environment (children inherit it), and cleaned of
    the live gauges of processes that are gone."""
    path = os.environ.get(ENV) or str(
        Path(tempfile.gettempdir()) / f"prometheus-multiproc-{hashlib.sha256(bytes(base_dir)).hexdigest()[:12]}"
    )
    Path(path).mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = path
    dead_processes_clean(path)
    return path


def dead_processes_clean(path: str) -> None:
    """mark_process_dead for every pid that has files here and no process any more (a SIGKILLed child never ran
    its exit hook). Only live-mode gauges are removed: counters and histograms of dead processes stay summed, so
    a counter never goes backwards."""
    try:
        names = os.listdir(path)
    except OSError:
        return
    pids = {int(m.group(1)) for name in names if name.startswith("gauge_live") and (m := _PID_FILE.search(name))}
    dead = [pid for pid in pids if not _alive(pid)]
    if not dead:
        return
    from prometheus_client import multiprocess

    for pid in dead:
        multiprocess.mark_process_dead(pid, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
