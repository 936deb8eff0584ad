"""Names that become parts of file paths: experiment keys and file names derived from ids.

An experiment key is a *name*, never a path: 1 to 100 characters from
``A-Z a-z 0-9 _ . -``, starting with a letter, a digit or ``_``. Keys appear
in run ids, folder names and recovered CSV names, so a key like
``../x`` or ``a/b`` could write outside the data folder or make a run folder
unrecoverable; :func:`check_key` refuses them with a message naming the rule.
Discovery derives valid keys from file names (:func:`key_candidates`).

Names derived from a participant id or a key are made safe with
:func:`safe_file_name` and placed with :func:`file_inside`, which refuses any
result that would land outside its folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import SessionError

KEY_CHARSET = "letters, digits, '_', '.' and '-' (1-100 characters, starting with a letter, digit or '_')"
KEY_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class InvalidName(SessionError):
    """A key or file name is not a valid name (see :data:`KEY_CHARSET`)."""

    code = "invalid_args"


def is_valid_key(key: object) -> bool:
    """Whether ``key`` can name an experiment (letters, digits, ``_-.``; see KEY_PATTERN)."""
    return isinstance(key, str) and KEY_PATTERN.fullmatch(key) is not None


def check_key(key: object) -> str:
    """Return ``key`` if it is a valid experiment key, else raise :class:`InvalidName` saying why."""
    if not is_valid_key(key):
        raise InvalidName(f"invalid experiment key {key!r}: a key may contain only {KEY_CHARSET}")
    return key  # type: ignore[return-value]


def safe_file_name(text: object, fallback: str = "unnamed", limit: int = 100) -> str:
    """``text`` reduced to a single safe path component: runs of other characters become ``_``.

    Never empty, never ``.``/``..``, never starting with ``.`` (hidden) or ``-`` (an option).
    """
    name = _UNSAFE.sub("_", str(text)).strip("._-")[:limit].strip("._-")
    return name or fallback


def key_candidates(relative: Path) -> list[str]:
    """Keys to try, best first, for an experiment file at ``relative`` (to the root): stem, parent-stem, path."""
    stem = safe_file_name(relative.stem, "experiment")
    parts = [safe_file_name(p, "x") for p in relative.with_suffix("").parts]
    candidates = [stem]
    if len(parts) >= 2:
        candidates.append(f"{parts[-2]}-{stem}")
    candidates.append("-".join(parts))
    return [c[:100] for c in dict.fromkeys(candidates)]


def file_inside(folder: Path, name: str) -> Path:
    """``folder / name`` if it stays inside ``folder`` once resolved, else :class:`InvalidName`."""
    folder = Path(folder).resolve()
    path = (folder / name).resolve()
    if folder not in path.parents:
        raise InvalidName(f"file name {name!r} would be outside {folder}")
    return path


def contain_data_file(this_exp, run_dir: Path) -> str | None:
    """Keep an ExperimentHandler's data file inside ``run_dir``; returns the old name if it had to move.

    Builder names the file from ``expInfo['participant']``, so a participant
    id such as ``../../x`` would point it outside the run's folder. Such a
    name is replaced by a sanitised one in ``run_dir/data/`` (the id itself
    stays as typed in the data's ``participant`` column).
    """
    name = getattr(this_exp, "dataFileName", None)
    if not name:
        return None
    run_dir = Path(run_dir).resolve()
    target = (run_dir / name).resolve()  # absolute names ignore run_dir; relative ones are under it
    if run_dir in target.parents:
        return None
    this_exp.dataFileName = str(run_dir / "data" / safe_file_name(Path(name).name, "data"))
    return name
