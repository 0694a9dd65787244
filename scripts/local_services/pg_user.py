"""PostgreSQL refuses to run as root: as root, its programs run as the unprivileged system user `postgres`.

That user is created when missing (useradd), the folders on the way to the binaries and the data get o+x (search
only) when it could not pass them, and initdb / pg_ctl run through runuser (both found in /usr/sbin even when PATH
lacks it). Not root: everything runs as we are. `pg_run` runs one PostgreSQL program this way, its output to a log
file that is shown when it fails.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
from pathlib import Path

from .common import ServiceError, say

PG_USER = "postgres"


def _sbin(name: str) -> str:
    """A system tool that a user's PATH may lack (runuser, useradd live in /usr/sbin)."""
    return shutil.which(name) or next(
        (f"{d}/{name}" for d in ("/usr/sbin", "/sbin") if os.path.exists(f"{d}/{name}")), name
    )


def pg_uid() -> int:
    return pwd.getpwnam(PG_USER).pw_uid


def as_pg_user() -> list[str]:
    return [_sbin("runuser"), "-u", PG_USER, "--"] if os.geteuid() == 0 else []


def pg_user_prepare(*paths: Path) -> None:
    """As root: the `postgres` system user exists and can reach ``paths`` (a folder's ancestors get o+x, search
    only, when they lack it). Not root: nothing to do."""
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        say(f"creating the system user {PG_USER!r} (PostgreSQL does not run as root)")
        subprocess.run(
            [_sbin("useradd"), "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER], check=True
        )
    uid = pg_uid()
    for path in paths:
        for folder in [*reversed(path.parents), path] if path.is_dir() else reversed(path.parents):
            stat = folder.stat()
            mode = stat.st_mode
            if not mode & 0o001 and not (stat.st_uid == uid and mode & 0o100):
                say(f"letting {PG_USER} pass through {folder} (chmod o+x)")
                folder.chmod(mode | 0o001)


def pg_run(args: list[str], *, log: Path, cwd: Path) -> None:
    """A PostgreSQL program (initdb, pg_ctl) as the server's user; its output to ``log`` (a pipe held open by the
    postmaster would block us), shown when it fails."""
    with open(log, "ab") as out:
        done = subprocess.run(
            [*as_pg_user(), *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C on the terminal reaches the demo's processes, not its servers
        )  # fmt: skip
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise ServiceError(f"{shlex.join(args)} failed ({done.returncode}):\n{tail}")
