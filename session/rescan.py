"""Find experiments that appeared under a session root after it was first searched.

Experiments copied in by other means (a file share, ``scp``, ``liaison push``)
are registered without restarting anything. Keys already handed out never
change: a new file whose name clashes with a known key is keyed by its path
relative to the root instead (as :func:`session.experiments.discover` does for
clashes it sees at once). Nothing is imported: discovery only reads files.
"""

from __future__ import annotations

from pathlib import Path

from .experiments import Experiment, discover


def find_new(root: Path, known: dict[str, Experiment]) -> list[Experiment]:
    """The experiments under ``root`` whose files none of ``known`` has, with keys that are still free."""
    root = root.resolve()
    known_paths = {experiment.path for experiment in known.values()}
    taken = set(known)
    new = []
    for experiment in discover(root):
        if experiment.path in known_paths:
            continue
        key = experiment.key
        if key in taken:
            key = experiment.path.relative_to(root).with_suffix("").as_posix()
        if key in taken:  # the very same relative key is registered for another file: leave it alone
            continue
        taken.add(key)
        experiment.key = key
        new.append(experiment)
    return new
