"""Run records: a folder per run whose state shows, and a manifest of how it came to be.

Every run gets ``DATA/runs/<run_id>/`` holding PsychoPy's own data files, the
run's log (``run.log``), its captured output (``stdout.log``, ``stderr.log``),
a one-word ``STATUS`` file and ``manifest.json``.

``STATUS`` is ``RUNNING`` while the run is in progress, then one of
``FINISHED`` (ran to its end), ``STOPPED`` (stopped by the experimenter, data
saved), ``FAILED`` (the experiment raised) or ``ABORTED`` (killed, or
interrupted by a crash; see the manifest's ``recovery``). Both files are
replaced atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

STATUS_FILE = "STATUS"
MANIFEST_FILE = "manifest.json"
STATUS_OF_OUTCOME = {"completed": "FINISHED", "stopped": "STOPPED", "failed": "FAILED", "aborted": "ABORTED"}
RUNNING = "RUNNING"
PACKAGES = ("psychopy", "numpy", "pandas", "pyglet", "scipy", "liaison-session")
MAX_HASHED_BYTES = 64 << 20  # don't hash media folders of gigabytes before a run


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a crash leaves the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def set_status(run_dir: Path, status: str) -> None:
    """Replace the run folder's ``STATUS`` file with ``status`` (atomically)."""
    write_atomic(Path(run_dir) / STATUS_FILE, status + "\n")


def read_status(run_dir: Path) -> str | None:
    """The run folder's ``STATUS`` word, or None if the file is missing, unreadable or empty."""
    try:
        return (Path(run_dir) / STATUS_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The run folder's ``manifest.json``, or None if it is missing, unreadable or not JSON."""
    try:
        return json.loads((Path(run_dir) / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Replace ``manifest.json`` atomically (sorted keys; what JSON cannot take is written as ``str``)."""
    write_atomic(Path(run_dir) / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")


def update_manifest(run_dir: Path, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into the manifest (a new one if missing) and write it; returns the result.

    Read-modify-write: only one process may update a run's manifest at a time.
    """
    manifest = read_manifest(run_dir) or {}
    manifest.update(changes)
    write_manifest(run_dir, manifest)
    return manifest


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks. Raises OSError if unreadable."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def experiment_files(experiment_path: Path, script: Path | None = None) -> dict[str, str]:
    """sha256 of the experiment file, its compiled script and the files beside it (conditions...)."""
    folder = experiment_path.parent
    hashes: dict[str, str] = {}
    budget = MAX_HASHED_BYTES
    candidates = [experiment_path]
    if script is not None and script.exists():
        candidates.append(script)
    candidates += sorted(p for p in folder.iterdir() if p.is_file() and p not in candidates
                         and not p.name.startswith(".") and p.suffix not in (".pyc", ".log"))
    for path in candidates:
        try:
            size = path.stat().st_size
        except OSError:
            continue
        name = path.relative_to(folder).as_posix() if folder in path.parents else str(path)
        if size > budget:
            hashes[name] = f"not hashed ({size} bytes)"
            continue
        budget -= size
        hashes[name] = sha256_file(path)
    return hashes


def git_state(folder: Path) -> dict[str, Any] | None:
    """Commit and dirtiness of the git work tree holding ``folder``, if it is one."""
    try:
        commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--", "."],
                                capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape a run (``PACKAGES``); None for those missing."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    """Host, user, Python, OS and package versions, for the manifest (never raises for a missing user)."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        user = None
    return {
        "host": socket.gethostname(),
        "user": user,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "packages": package_versions(),
    }


def start_record(run_dir: Path, *, run_id: str, key: str, experiment_path: Path, root: Path,
                 script: Path | None, exp_info: dict[str, Any], seed: int,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``RUNNING`` and the manifest before the experiment starts (off the frame loop).

    ``extra`` (e.g. ``simulated``, ``plan``) is merged into the manifest.
    """
    manifest = {
        "run_id": run_id,
        "experiment": {
            "key": key,
            "file": experiment_path.relative_to(root).as_posix() if root in experiment_path.parents
            else str(experiment_path),
            "sha256": experiment_files(experiment_path, script),
            "git": git_state(experiment_path.parent),
        },
        "exp_info": exp_info,
        "seeds": {"seed": seed, "random": seed, "numpy": seed % 2**32},
        "environment": environment(),
        "worker_pid": os.getpid(),
        "started": time.time(),
        "ended": None,
        "duration": None,
        "outcome": None,
        "status": RUNNING,
        "rows": 0,
        "data_files": [],
        "error": None,
        "simulated": False,
        **(extra or {}),
    }
    write_manifest(run_dir, manifest)
    set_status(run_dir, RUNNING)
    return manifest


def finish_record(run_dir: Path, *, outcome: str, rows: int, data_files: list[str], exp_info: dict[str, Any],
                  duration: float, error: str | None, gc_max_pause: float,
                  gc_max_boundary_pause: float = 0.0, plugins: dict[str, Any] | None = None,
                  extra: dict[str, Any] | None = None) -> None:
    """Write the run's end into its manifest, then its final ``STATUS`` (``FAILED`` for an unknown outcome).

    The manifest goes first, so a ``STATUS`` other than ``RUNNING`` means the manifest is complete.
    ``extra`` adds fields (e.g. the run's timing report).
    """
    status = STATUS_OF_OUTCOME.get(outcome, "FAILED")
    update_manifest(run_dir, ended=time.time(), duration=duration, outcome=outcome, status=status, rows=rows,
                    data_files=data_files, exp_info=exp_info, error=error, gc_max_pause=gc_max_pause,
                    gc_max_boundary_pause=gc_max_boundary_pause, plugins=plugins or {}, **(extra or {}))
    set_status(run_dir, status)
