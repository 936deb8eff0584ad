"""Liaison: control PsychoPy experiments on a stimulus PC from another machine.

- :mod:`liaison.protocol`: the typed WebSocket protocol (pydantic models).
- :mod:`liaison.server`: the server that supervises the session worker.
- :mod:`liaison.client`: blocking and async Python clients.
- :mod:`liaison.cli`: the ``liaison`` command.
"""

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "liaison-session"

try:  # the version lives in one place: pyproject.toml, read back from the installed metadata
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
