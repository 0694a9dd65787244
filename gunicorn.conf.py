"""gunicorn reads ./gunicorn.conf.py by default (the Procfile's `web` and the tests' servers run from here).

prometheus_client's multiprocess mode: the master exports PROMETHEUS_MULTIPROC_DIR (config/multiproc.py) before
forking, and takes a dead worker's live gauges out of the sums.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from config.multiproc import multiproc_dir_setup  # noqa: E402

multiproc_dir_setup(Path(__file__).resolve().parent)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
