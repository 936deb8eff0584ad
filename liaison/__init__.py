"""Liaison: control PsychoPy experiments on a stimulus PC from another machine.

- :mod:`liaison.protocol`: the typed WebSocket protocol (pydantic models).
- :mod:`liaison.server`: the server that supervises the session worker.
- :mod:`liaison.client`: blocking and async Python clients.
- :mod:`liaison.cli`: the ``liaison`` command.
"""

__version__ = "0.1.0"
