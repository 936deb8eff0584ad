"""Start-up checks that explain themselves: what is wrong with this installation and how to fix it.

Each check returns a list of problems, each a sentence that names the problem
and the command that fixes it; ``liaison serve`` refuses to start with any.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from pathlib import Path

from .resources import missing_dashboard_files

# Not imported from the package's __init__: when another package overwrote that file, these checks must
# still run and say so.
DISTRIBUTION = "liaison-session"

# Import name -> distribution, for the dependencies the server cannot start without.
REQUIRED_MODULES = {
    "websockets": "websockets", "pydantic": "pydantic", "numpy": "numpy", "typer": "typer",
    "cryptography": "cryptography", "psychopy": "psychopy",
}
OWN_MODULES = ("liaison/server/app.py", "liaison/protocol/commands.py", "liaison/client/sync.py", "liaison/cli.py")
REINSTALL = f"pip install --force-reinstall {DISTRIBUTION}"


def shadowing_problems() -> list[str]:
    """PsychoPy Studio's helper ``liaison-py`` installs a top-level module named ``liaison`` too: one hides the other."""
    problems = []
    try:
        importlib.metadata.distribution("liaison-py")
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        problems.append("the package liaison-py (PsychoPy Studio's helper) is installed in this environment and "
                        "also provides a module named 'liaison', which hides or overwrites this one; fix: "
                        f"pip uninstall -y liaison-py && {REINSTALL}, or install Liaison in its own virtualenv")
    package = Path(importlib.import_module("liaison").__file__).resolve().parent.parent
    absent = [name for name in OWN_MODULES if not (package / name).is_file()]
    if absent:
        problems.append(f"the 'liaison' module imported from {package / 'liaison'} is not (all of) this project's: "
                        f"{', '.join(absent)} missing; fix: {REINSTALL}")
    return problems


def dependency_problems() -> list[str]:
    """Dependencies that are not installed (found without importing them: PsychoPy takes seconds)."""
    problems = []
    for module, distribution in REQUIRED_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            problems.append(f"the dependency {distribution} is not installed in this environment; fix: "
                            f"pip install {distribution} (or reinstall: pip install {DISTRIBUTION})")
    return problems


def dashboard_problems(web: Path | None) -> list[str]:
    """What is wrong with the dashboard's files under ``web`` (none missing: an empty list), each with its fix."""
    missing = missing_dashboard_files(web)
    if not missing:
        return []
    where = f"from {web}" if web is not None else "(no dashboard folder in this installation)"
    return [f"the dashboard's files are missing {where}: {', '.join(missing)}; fix: {REINSTALL} "
            "(from a clone: git checkout -- web)"]


def startup_problems(web: Path | None, check_dependencies: bool = True) -> list[str]:
    """Everything that would keep ``liaison serve`` from working, as sentences with fixes."""
    problems = shadowing_problems() + dashboard_problems(web)
    if check_dependencies:
        problems += dependency_problems()
    return problems
