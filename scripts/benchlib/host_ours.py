"""Subprocess: our liaison server (``ServerThread``) with its session worker, as tests/conftest.py starts it.

The server's event loop runs on a thread of this process and the session (PsychoPy,
the window, the experiments) in the worker process it supervises. Prints
``BENCH-READY {json}`` (port, pids) on stdout when serving; a line on stdin (or EOF)
shuts it down (the worker closes its window, the journal is flushed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--window", required=True, help="JSON WindowParams")
    parser.add_argument("--priority", default=None, help="normal, high or realtime [default: ServerConfig's]")
    args = parser.parse_args()

    from session.display import ensure_display

    ensure_display(None)
    from liaison.server import ServerConfig, ServerThread

    config = ServerConfig(root=Path(args.root), port=0, token=args.token, data_dir=Path(args.data),
                          window=json.loads(args.window),
                          **({"priority": args.priority} if args.priority else {}))
    thread = ServerThread(config)
    with thread as server:
        info = {"port": server.port, "pid": os.getpid(), "worker_pid": server.link.host.process.pid,
                "url": thread.url, "client_queue_limit": config.client_queue_limit,
                "switchinterval": sys.getswitchinterval(),
                "priority": config.priority}
        sys.stdout.write("\nBENCH-READY " + json.dumps(info) + "\n")
        sys.stdout.flush()
        sys.stdin.readline()


if __name__ == "__main__":
    main()
