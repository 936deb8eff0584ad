"""A throw-away PostgreSQL server for tests: initdb + pg_ctl in a temp dir, run as a non-root user.

Debian's ``postgresql`` package provides the binaries (``scripts/setup``
installs it). initdb refuses to run as root (CI runs as root), so the cluster
belongs to the package's ``postgres`` system user; as any other user it
simply belongs to that user. It listens on 127.0.0.1 on a free port and on a
unix socket inside the temp dir, trusts local connections (nothing but this
test machine can reach it) and is stopped, then deleted, at the end.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


class PostgresCluster:
    """A running cluster; ``url`` connects to its ``liaison`` database."""

    def __init__(self) -> None:
        self.bin = next((d for d in PG_BIN_DIRS if (d / "initdb").exists()), None)
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed: no /usr/lib/postgresql/*/bin/initdb. "
                               "Install Debian's 'postgresql' package (scripts/setup does).")
        self.base = Path(tempfile.mkdtemp(prefix="liaison-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise RuntimeError("running as root and there is no 'postgres' system user for initdb "
                                   "(the 'postgresql' package creates it)") from exc
            os.chown(self.base, self.user.pw_uid, self.user.pw_gid)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/liaison"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        def demote() -> None:
            if self.user is not None:
                os.setgid(self.user.pw_gid)
                os.setuid(self.user.pw_uid)

        result = subprocess.run(list(args), preexec_fn=demote, cwd=self.base, capture_output=True, text=True,
                                timeout=timeout, env={**os.environ, "LC_ALL": "C.UTF-8"})
        if result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr or result.stdout}")
        return result

    def start(self) -> "PostgresCluster":
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.base} "
                   "-c fsync=on -c max_connections=50 -c shared_buffers=64MB")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "log"), "-o", options,
                  "-w", "-t", "60", "start")
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "liaison")
        return self

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
            except RuntimeError:
                pass  # not running (start failed); the folder goes anyway
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        path = self.base / "log"
        return path.read_text(errors="replace") if path.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
