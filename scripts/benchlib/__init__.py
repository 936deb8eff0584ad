"""Helpers for ``scripts/bench.py``: ours vs PsychoPy's liaison/Session vs a bare websockets floor.

Layout (each system under test runs in its own process, the clients in the bench process):

- ``experiments``: the Builder-style experiments both stacks run (written into temp roots);
- ``hosts``: starts the three servers as subprocesses (our ``ServerThread``, PsychoPy's
  ``WebSocketServer`` + ``Session`` + ``SessionQueue``, a bare echo server) and stops them;
- ``host_ours`` / ``host_psychopy`` / ``host_echo``: the subprocess entry points;
- ``wire``: minimal WebSocket clients for the three protocols;
- ``measures``: one coroutine per measure, returning plain dicts;
- ``report``: the table, the goal checks and the JSON report.
"""
