"""Where the dashboard's files and the bundled example experiments are.

In the repository they live at its top level (``web/``, ``examples/``); the
wheel maps them into the package as ``liaison/web`` and ``liaison/examples``
(``[tool.setuptools.package-dir]`` in pyproject.toml). Both are found here
through :mod:`importlib.resources`, never through a path relative to the
current directory, so an installed ``liaison`` works from anywhere.

Both folders are read-only as far as Liaison is concerned: nothing is ever
written inside them (runs and compiled ``.psyexp`` scripts go to the data
folder, see :func:`default_data_dir`).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

DASHBOARD_FILES = ("index.html", "js/app.js", "js/connection.js", "style.css")
CHECKOUT = Path(__file__).resolve().parent.parent  # the repository, when run from a clone


def _bundled(name: str) -> Path | None:
    """``liaison/<name>`` as a real folder, from the installed package or the checkout it was run from."""
    try:
        found = importlib.resources.files("liaison") / name
    except ModuleNotFoundError:  # pragma: no cover - liaison imports this very module
        found = None
    if found is not None and found.is_dir():
        return Path(str(found))
    # A clone (editable install or PYTHONPATH): the folder sits beside the package.
    beside = CHECKOUT / name
    if beside.is_dir() and (CHECKOUT / "pyproject.toml").is_file():
        return beside
    return None


def web_dir() -> Path | None:
    """The dashboard's folder, or None if this installation has none."""
    return _bundled("web")


def examples_dir() -> Path | None:
    """The bundled example experiments' folder, or None if this installation has none."""
    return _bundled("examples")


def missing_dashboard_files(folder: Path | None) -> list[str]:
    """The dashboard files ``folder`` lacks (all of them when there is no folder)."""
    if folder is None:
        return list(DASHBOARD_FILES)
    return [name for name in DASHBOARD_FILES if not (folder / name).is_file()]


def is_inside_installation(path: Path) -> bool:
    """True if ``path`` lies in an installed package's folder (site-packages), where nothing may be written."""
    resolved = path.resolve()
    return any(part in ("site-packages", "dist-packages") for part in resolved.parts)


def default_data_dir(root: Path) -> Path:
    """``ROOT/data``, unless ROOT is inside an installation: then ``./liaison-data`` in the working directory."""
    if is_inside_installation(root):
        return Path.cwd() / "liaison-data"
    return root / "data"
