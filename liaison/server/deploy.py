"""Deploying experiments from another machine: an uploaded archive becomes ``ROOT/<name>/``.

PsychoPy's ``addExperiment(file, folder=...)`` copies a project into the
session root; from a lab laptop the equivalent is an upload (``liaison push``
or the dashboard). The archive is a zip file. Before a single byte is
written, every entry is checked: entries with ``..``, absolute or drive
paths, backslashes, symbolic links or device files are refused, and so is an
archive with too many files or more bytes than allowed once unpacked. It is
unpacked into a fresh hidden folder inside the root, checked to hold at
least one experiment, then renamed into place in one step, so the root never
shows a half-unpacked experiment.

An existing folder is replaced only when asked (``replace``), never while a
run uses it, and the old one is kept in ``ROOT/.liaison-replaced/``: nothing
is ever deleted.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from session.experiments import SKIP_DIRS, discover

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,99}")
MAX_ENTRIES = 5000
UNPACKED_FACTOR = 5  # an archive may unpack to at most this many times the upload limit
REPLACED_DIR = ".liaison-replaced"
IGNORED_ENTRIES = ("__MACOSX/",)  # macOS "Compress" adds these resource forks


class DeployError(Exception):
    """An upload refused, with a ``code`` of the protocol's error codes and a sentence saying why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What one upload may hold: archive bytes, unpacked bytes, entries."""
    archive_bytes: int
    unpacked_bytes: int
    entries: int = MAX_ENTRIES

    @classmethod
    def for_upload(cls, archive_bytes: int) -> "Limits":
        """Limits for an archive of ``archive_bytes``: unpacked at most UNPACKED_FACTOR times that."""
        return cls(archive_bytes, archive_bytes * UNPACKED_FACTOR)


def check_name(name: str) -> str:
    """The folder name an experiment is deployed under: one plain path component."""
    if not NAME.fullmatch(name or "") or name.endswith((".", " ")):
        raise DeployError("invalid_args", f"folder name {name!r}: use letters, digits, '.', '_', '-' or spaces "
                                          "(at most 100, starting with a letter or digit)")
    if name in SKIP_DIRS:
        raise DeployError("invalid_args", f"folder name {name!r} is reserved (such folders are never searched)")
    return name


def check_root(root: Path, data_dir: Path) -> None:
    """The root must be a folder this server may write to (not an installed package's examples)."""
    if any(part in ("site-packages", "dist-packages") for part in root.resolve().parts):
        raise DeployError("forbidden", "this server serves the examples bundled with the installed package; "
                                       "serve a folder of your own (liaison serve ROOT) to deploy experiments to it")
    if not os.access(root, os.W_OK):
        raise DeployError("forbidden", f"the session root {root} is not writable by the server")


def check_target(root: Path, name: str, *, replace: bool, in_use: bool) -> Path:
    """``root/name`` if the upload may go there: new, or replaceable (asked for, and no run uses it)."""
    check_name(name)
    target = root / name
    if target.exists() or target.is_symlink():
        if not replace:
            raise DeployError("conflict", f"{name}/ already exists in the session root; push with --replace "
                                          f"to replace it (the old one is kept in {REPLACED_DIR}/)")
        if in_use:
            raise DeployError("conflict", f"{name}/ is used by the run in progress; it can be replaced after "
                                          "the run")
        if target.is_symlink() or not target.is_dir():
            raise DeployError("conflict", f"{name} in the session root is not a folder; it is left alone")
    return target


def _entry_path(info: zipfile.ZipInfo) -> PurePosixPath:
    """The entry's relative path, or DeployError naming the entry and what is wrong with it."""
    name = info.filename
    if "\0" in name or "\\" in name:
        raise DeployError("invalid_args", f"archive entry {name!r}: backslashes and NUL are not allowed in names")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise DeployError("invalid_args", f"archive entry {name!r} has an absolute path")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise DeployError("invalid_args", f"archive entry {name!r} points outside its folder (..)")
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:  # made on Unix: the entry's file type is recorded
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise DeployError("invalid_args", f"archive entry {name!r} is a symbolic link; links are refused")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise DeployError("invalid_args", f"archive entry {name!r} is not a regular file or folder")
    return PurePosixPath(*[p for p in parts if p not in ("", ".")])


def plan_entries(archive: zipfile.ZipFile, limits: Limits) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Every file entry with the path it will have under the experiment's folder (all checked first)."""
    entries = [info for info in archive.infolist() if not info.filename.startswith(IGNORED_ENTRIES)]
    if len(entries) > limits.entries:
        raise DeployError("too_large", f"the archive has {len(entries)} entries; at most {limits.entries} allowed")
    paths = [(info, _entry_path(info)) for info in entries]
    total = sum(info.file_size for info, _ in paths)
    if total > limits.unpacked_bytes:
        raise DeployError("too_large", f"the archive unpacks to {total} bytes; at most {limits.unpacked_bytes} "
                                       "allowed")
    files = [(info, path) for info, path in paths if not info.is_dir() and path.parts]
    if not files:
        raise DeployError("invalid_args", "the archive holds no files")
    # One folder around everything (a zipped folder): its contents are the experiment's folder.
    tops = {path.parts[0] for _, path in files}
    if len(tops) == 1 and all(len(path.parts) > 1 for _, path in files):
        files = [(info, PurePosixPath(*path.parts[1:])) for info, path in files]
    seen: set[str] = set()
    for info, path in files:
        key = path.as_posix().lower()  # also a clash on case-insensitive disks
        if key in seen:
            raise DeployError("invalid_args", f"archive entry {info.filename!r} appears twice")
        seen.add(key)
    return files


def _extract(archive: zipfile.ZipFile, files, target: Path) -> int:
    """Write the checked entries under ``target`` (a fresh folder); returns the bytes written."""
    written = 0
    base = target.resolve()
    for info, path in files:
        destination = base.joinpath(*path.parts)
        if base not in destination.resolve().parents:  # belt and braces: the checks above already ensure it
            raise DeployError("invalid_args", f"archive entry {info.filename!r} points outside its folder")
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with archive.open(info) as source, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        written += info.file_size
    return written


def unpack(archive_path: Path, root: Path, name: str, limits: Limits, *, replace: bool = False,
           in_use: bool = False) -> dict:
    """Unpack the zip at ``archive_path`` into ``root/name``; returns what was deployed.

    ``in_use``: a run (running, paused or starting) uses an experiment in that
    folder, so it is never replaced. Raises :class:`DeployError`; on any error
    nothing is left behind in ``root``.
    """
    root = root.resolve()
    target = check_target(root, name, replace=replace, in_use=in_use)
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DeployError("invalid_args", f"the upload is not a zip archive ({exc})") from exc
    staging = root / f".liaison-upload-{secrets.token_hex(6)}"
    with archive:
        files = plan_entries(archive, limits)
        staging.mkdir(mode=0o755)
        try:
            written = _extract(archive, files, staging)
            found = discover(staging)
            if not found:
                raise DeployError("invalid_args", "the archive holds no experiment (.psyexp or Builder-style .py)")
            kept = None
            if target.exists():
                backups = root / REPLACED_DIR
                backups.mkdir(exist_ok=True)
                kept = backups / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
                target.rename(kept)
            staging.rename(target)
        except zipfile.BadZipFile as exc:  # e.g. a CRC error found while unpacking
            shutil.rmtree(staging, ignore_errors=True)
            raise DeployError("invalid_args", f"the archive is damaged: {exc}") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return {"folder": name, "files": len(files), "bytes": written,
            "experiments": sorted(e.path.relative_to(staging).as_posix() for e in found),
            "replaced": str(kept.relative_to(root)) if kept else None}
