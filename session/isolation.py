"""Run experiment code as a standalone Builder script would, and leave nothing behind.

A Builder script started on its own has its folder as working directory and
at the front of ``sys.path``; the next script starts in a fresh interpreter.
A session runs many experiments in one process, so :func:`experiment_scope`
recreates the first half for one stage (import, setup, run, save) and undoes
it afterwards: the working directory and ``sys.path`` are put back as they
were, and every module imported from inside the session root (an experiment's
own ``helpers.py``, a ``lib/`` it added to ``sys.path``) is dropped from
``sys.modules``, so the next experiment imports its own files, not the
previous one's. Scopes nest: an inner scope for the same experiment only
restores the working directory, so one run imports its helpers once.

Main thread only (experiments run there); the working directory is
process-wide state, which is why nothing else may rely on it.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_open_scopes: list[Path] = []  # folders of the scopes now entered, outermost first


def _is_inside(path: str | None, folder: Path) -> bool:
    if not path:
        return False
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):
        return False
    return resolved == folder or folder in resolved.parents


def modules_from(folder: Path, names: list[str] | None = None) -> list[str]:
    """Names in ``sys.modules`` (or in ``names``) whose file lies inside ``folder``."""
    found = []
    for name in list(names if names is not None else sys.modules):
        module = sys.modules.get(name)
        if module is None:
            continue
        spec = getattr(module, "__spec__", None)
        origin = getattr(module, "__file__", None) or (spec.origin if spec is not None else None)
        if _is_inside(origin, folder):
            found.append(name)
    return found


@contextmanager
def preserved_sys_path() -> Iterator[None]:
    """Put ``sys.path`` back exactly as it was (PsychoPy's compiler prepends its components folder)."""
    saved = list(sys.path)
    try:
        yield
    finally:
        sys.path[:] = saved


@contextmanager
def experiment_scope(folder: str | os.PathLike, root: str | os.PathLike,
                     keep: frozenset[str] = frozenset()) -> Iterator[None]:
    """Inside: cwd is ``folder``, which is first on ``sys.path``. After: cwd, path and modules as before.

    Modules imported inside the scope from anywhere under ``root`` are
    forgotten on the way out, except those named in ``keep`` (the
    experiment's own private module, which the session caches).
    """
    folder = Path(folder).resolve()
    root = Path(root).resolve()
    saved_cwd = os.getcwd()
    outermost = not _open_scopes
    saved_path = list(sys.path) if outermost else None
    before = set(sys.modules) if outermost else None
    _open_scopes.append(folder)
    if not sys.path or sys.path[0] != str(folder):
        sys.path.insert(0, str(folder))
    os.chdir(folder)
    try:
        yield
    finally:
        _open_scopes.pop()
        try:
            os.chdir(saved_cwd)
        except OSError:  # the old working directory was removed meanwhile
            os.chdir(root)
        if outermost:
            sys.path[:] = saved_path
            new = [name for name in sys.modules if name not in before and name not in keep]
            for name in modules_from(root, new):
                sys.modules.pop(name, None)


def exit_outcome(exc: SystemExit) -> tuple[bool, str | None]:
    """Whether ``sys.exit(code)`` in an experiment means success, and the error if not.

    Like a standalone script's exit status: ``None`` and ``0`` (what
    ``core.quit()`` raises) end the experiment normally; any other int is a
    failure "exit status N"; a string (``sys.exit("fatal: ...")``) is a
    failure whose message is that string; anything else is a failure too.
    """
    code = exc.code
    if code is None or code == 0:
        return True, None
    if isinstance(code, bool):  # sys.exit(True) exits with status 1
        return False, "the experiment exited with status 1"
    if isinstance(code, int):
        return False, f"the experiment exited with status {code}"
    return False, f"the experiment exited: {code}"
