"""Helpers for ``scripts/soak.py``: the real server for N minutes at a steady event rate, memory watched.

Layout (the CLI in ``scripts/soak.py``; statistics from ``benchlib.stats``):

- ``experiment``: the Builder-style experiment adding rows at a steady rate; the bytes-per-row calibration;
- ``server``: ``liaison serve`` as a child process in its own group, always ended;
- ``peer``: one WebSocket client counting and checking every row it receives;
- ``load``: the controller's steady stream of cheap commands, round trips timed;
- ``procfs``: memory, CPU and children of a process from /proc;
- ``sampler``: one sample (and console line) every interval;
- ``memory``: slopes after the warm-up against the growth the design explains;
- ``checks``: after the server stopped: journal, CSV, log, row counts, and the problems found;
- ``report``: the JSON report and the printed summary;
- ``soak``: :class:`Soak`, which holds the state and runs the phases in order.
"""
